import { expect, test } from "bun:test";
import type { SavedService } from "../state/store.ts";
import { defaultOptions } from "./options.ts";
import { restoredService, savedService } from "./saved.ts";

const NO_CHECKS = { drainer: async () => 0, monitored: false, healthChanged: () => {} };

const saved: SavedService = {
  name: "web",
  options: defaultOptions({ hosts: ["a.test"] }),
  targets: ["web-1:3000", "web-2:3000"],
  readTargets: ["replica:3000"],
  mode: "stopped",
  stopMessage: "back soon",
  maxPauseMs: 30_000,
  rollout: { targets: ["canary:3000"], percent: 10, list: ["alice"] },
};

test("a saved service comes back with its sets, mode and split, and saves as it was", () => {
  const service = restoredService(saved, NO_CHECKS);
  expect(service.targets.map((t) => t.address)).toEqual(["web-1:3000", "web-2:3000"]);
  expect(service.live.every((t) => t.health === "healthy")).toBe(true);
  expect(service.pause.mode).toBe("stopped");
  expect(service.split.percent).toBe(10);
  expect(savedService(service)).toEqual(saved);
});
