import { expect, test } from "bun:test";
import type { HistoryRecord } from "../service/history.ts";
import { commandLine, renderHistory } from "./history.ts";

const sets = (targets: string[], readTargets: string[] = [], rolloutTargets: string[] = []) => ({ targets, readTargets, rolloutTargets });

const deployed: HistoryRecord = {
  time: "2026-03-01T10:00:00.123Z",
  command: "deploy",
  options: { targets: ["web-2:3000"], hosts: ["app.test", "www.app.test"], deployTimeout: "5s", forwardHeaders: false, tls: true },
  before: sets(["web-1:3000"], ["ro-1:3000"]),
  after: sets(["web-2:3000"]),
  durationMs: 2345,
  outcome: "ok",
};
const failed: HistoryRecord = {
  time: "2026-03-01T10:05:00.000Z",
  command: "stop",
  options: { message: "back at 10:30" },
  before: sets(["web-2:3000"], [], ["canary:3000"]),
  after: sets(["web-2:3000"], [], ["canary:3000"]),
  durationMs: 12,
  outcome: "failed",
  error: "target a failed\nError: target b failed",
};

test("a record's command reads as it was typed, flags by their names, targets left to their column", () => {
  expect(commandLine(deployed)).toBe("deploy --host app.test,www.app.test --deploy-timeout 5s --no-forward-headers --tls");
  expect(commandLine(failed)).toBe('stop --message "back at 10:30"');
  expect(commandLine({ ...failed, command: "pause", options: { maxPause: "10s" } })).toBe("pause --max-pause 10s");
});

test("one aligned row per record, newest last; the outcome last with its reason on one line", () => {
  expect(renderHistory([deployed, failed]).split("\n")).toEqual([
    "TIME                  COMMAND                                                                             DURATION  TARGETS (BEFORE → AFTER)                                         OUTCOME",
    "2026-03-01T10:00:00Z  deploy --host app.test,www.app.test --deploy-timeout 5s --no-forward-headers --tls  2.3s      web-1:3000 read:ro-1:3000 → web-2:3000                           ok",
    '2026-03-01T10:05:00Z  stop --message "back at 10:30"                                                      12ms      web-2:3000 rollout:canary:3000 → web-2:3000 rollout:canary:3000  failed: target a failed; target b failed',
  ]);
});

test("a service that did not exist before (or after) shows -", () => {
  const line = renderHistory([{ ...deployed, before: sets([]) }]).split("\n")[1]!;
  expect(line).toContain(" - → web-2:3000 ");
});
