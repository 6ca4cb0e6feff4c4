import { expect, test } from "bun:test";
import type { SavedService } from "../state/store.ts";
import { defaultOptions } from "./options.ts";
import { restoredService, savedService } from "./saved.ts";
import { Target } from "./target.ts";
import { serviceView } from "./view.ts";

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

test("list shows every target with its role, draining and adding ones too", () => {
  const service = restoredService({ ...saved, mode: "running", stopMessage: "" }, NO_CHECKS);
  const [old] = service.cutover({ writers: [service.targets[1]!] });
  service.adding.add(new Target("new:3000"));
  expect(old?.address).toBe("web-1:3000");
  expect(serviceView(service)).toEqual({
    name: "web",
    hosts: ["a.test"],
    pathPrefixes: ["/"],
    tls: false,
    state: "running",
    targets: [
      { address: "web-2:3000", state: "healthy", role: "writer" },
      { address: "replica:3000", state: "healthy", role: "reader" },
      { address: "canary:3000", state: "healthy", role: "rollout" },
      { address: "web-1:3000", state: "draining", role: "draining" },
      { address: "new:3000", state: "adding", role: "adding" },
    ],
    rollout: { percent: 10, list: ["alice"] },
  });
});
