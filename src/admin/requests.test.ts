import { expect, test } from "bun:test";
import * as v from "valibot";
import { describeIssues } from "../values.ts";
import { DeployRequest, PauseRequest, RolloutSetRequest, serviceNameSchema, StopRequest, TargetsRequest, UpgradeRequest } from "./requests.ts";

const problem = (schema: v.GenericSchema, input: unknown) => {
  const result = v.safeParse(schema, input);
  expect(result.success).toBe(false);
  return describeIssues(result.issues!);
};

test("service names: letters, digits, . _ -, starting with a letter or digit, up to 63 characters", () => {
  for (const ok of ["web", "Web-2", "a", "my_app.v2", "0day", "x".repeat(63)]) expect(v.parse(serviceNameSchema, ok)).toBe(ok);
  for (const bad of ["", "-web", ".web", "_web", "we b", "web/1", "x".repeat(64), "wéb"]) {
    expect(v.safeParse(serviceNameSchema, bad).issues?.[0].message).toBe(`invalid service name "${bad}" (letters, digits, . _ -)`);
  }
  expect(v.safeParse(serviceNameSchema, 5).issues?.[0].message).toBe("expected a service name");
});

test("a deploy needs a service and at least one target; the rest defaults", () => {
  expect(problem(DeployRequest, { targets: ["web:1"] })).toBe("service is required");
  expect(problem(DeployRequest, { service: "web" })).toBe("targets is required");
  expect(problem(DeployRequest, { service: "web", targets: [] })).toBe("targets: at least one target is required");
  expect(problem(DeployRequest, { service: "web", targets: "web:1" })).toBe("targets: expected a list");
  expect(problem(DeployRequest, { service: "web", targets: ["web:0"] })).toBe('targets: invalid target "web:0" (expected HOST:PORT, e.g. web-1:3000 or [::1]:3000)');
  const request = v.parse(DeployRequest, { service: "web", targets: ["Web-1:3000", "web-2"] });
  expect(request.targets).toEqual(["web-1:3000", "web-2:80"]);
  expect(request.readTargets).toEqual([]);
  expect(request.deployTimeout).toBe(30_000);
  expect(request.force).toBe(false);
  expect(request.drainTimeout).toBe(30_000);
  expect(request.pathPrefixes).toEqual(["/"]);
  expect(request.forwardHeaders).toBeUndefined(); // decided by resolveOptions from tls
});

test("targets, pause and stop requests: their defaults and limits", () => {
  expect(v.parse(TargetsRequest, { service: "web", targets: ["a:1"] })).toEqual({ service: "web", targets: ["a:1"], deployTimeout: 30_000, drainTimeout: undefined });
  expect(v.parse(PauseRequest, { service: "web" })).toEqual({ service: "web", drainTimeout: 30_000, maxPause: 30_000 });
  expect(v.parse(PauseRequest, { service: "web", maxPause: "2m" }).maxPause).toBe(120_000);
  expect(v.parse(StopRequest, { service: "web" })).toEqual({ service: "web", drainTimeout: 30_000, message: "" });
  expect(v.parse(StopRequest, { service: "web", message: "m".repeat(1000) }).message).toHaveLength(1000);
  expect(problem(StopRequest, { service: "web", message: "m".repeat(1001) })).toBe("message: message is too long (max 1000 characters)");
});

test("rollout set: a percentage 0-100 as a number or text, cookie values not empty", () => {
  expect(v.parse(RolloutSetRequest, { service: "web" })).toEqual({ service: "web", percent: 0, list: [] });
  expect(v.parse(RolloutSetRequest, { service: "web", percent: "25", list: ["beta"] })).toEqual({ service: "web", percent: 25, list: ["beta"] });
  expect(v.parse(RolloutSetRequest, { service: "web", percent: 100 }).percent).toBe(100);
  for (const bad of ["101", "-1", "2.5", "abc", "", 1000]) {
    expect(problem(RolloutSetRequest, { service: "web", percent: bad })).toBe(`percent: invalid percent "${bad}" (expected 0-100)`);
  }
  expect(problem(RolloutSetRequest, { service: "web", percent: true })).toBe("percent: expected a percentage");
  expect(problem(RolloutSetRequest, { service: "web", list: ["ok", ""] })).toBe("list: empty cookie value");
});

test("upgrade: the new server needs more than 0s to start", () => {
  expect(v.parse(UpgradeRequest, {})).toEqual({ readyTimeout: 30_000, drainTimeout: 30_000 });
  expect(v.parse(UpgradeRequest, { readyTimeout: "1ms" }).readyTimeout).toBe(1);
  expect(problem(UpgradeRequest, { readyTimeout: "0" })).toBe('readyTimeout: invalid duration "0" (the new server needs more than 0s to start)');
  expect(problem(UpgradeRequest, { readyTimeout: 0 })).toBe('readyTimeout: invalid duration "0" (the new server needs more than 0s to start)');
  expect(problem(UpgradeRequest, { readyTimeout: "0s" })).toBe('readyTimeout: invalid duration "0s" (the new server needs more than 0s to start)');
  expect(problem(UpgradeRequest, { readyTimeout: "0ms" })).toBe('readyTimeout: invalid duration "0ms" (the new server needs more than 0s to start)');
});
