import { expect, test } from "bun:test";
import { RolloutSplit } from "./rollout.ts";
import { defaultOptions } from "./options.ts";
import { Service } from "./service.ts";
import { Target, type TargetHealth } from "./target.ts";

const OPTIONS = defaultOptions();
const NO_CHECKS = { drainer: async () => 0, monitored: false, healthChanged: () => {} };

function target(address: string, health: TargetHealth = "healthy"): Target {
  const t = new Target(address);
  t.health = health;
  return t;
}

function service(writers: Target[], more: { readers?: Target[]; rollout?: Target[] } = {}): Service {
  const s = new Service("web", OPTIONS, writers, NO_CHECKS);
  s.cutover({ readers: more.readers ?? [], ...(more.rollout ? { rollout: more.rollout } : {}) });
  return s;
}

test("a lone writer is used even while it fails its checks: nothing else could answer", () => {
  const s = service([target("w:1", "unhealthy")]);
  expect(s.pick(false, undefined, false).target?.address).toBe("w:1");
});

test("writers are picked round robin, skipping unhealthy ones", () => {
  const s = service([target("a:1"), target("b:1", "unhealthy"), target("c:1")]);
  expect([1, 2, 3, 4].map(() => s.pick(false, undefined, false).target?.address)).toEqual(["a:1", "c:1", "a:1", "c:1"]);
});

test("reads go to healthy readers; with none healthy (even a lone one), to the writers", () => {
  const reader = target("r:1");
  const s = service([target("w:1")], { readers: [reader] });
  expect(s.pick(true, undefined, false).target?.address).toBe("r:1");
  expect(s.pick(true, undefined, true).target?.address).toBe("w:1"); // pinned after a write
  reader.health = "unhealthy";
  expect(s.pick(true, undefined, false).target?.address).toBe("w:1");
});

test("rollout clients go to healthy rollout targets; with none healthy (even a lone one), to the writers", () => {
  const canary = target("canary:1");
  const s = service([target("w:1")], { rollout: [canary] });
  s.split = new RolloutSplit(100);
  expect(s.pick(true, "alice", false).target?.address).toBe("canary:1");
  expect(s.pick(true, undefined, false).target?.address).toBe("w:1"); // no cookie: not in the rollout
  canary.health = "unhealthy";
  expect(s.pick(true, "alice", false).target?.address).toBe("w:1");
});
