import { expect, test } from "bun:test";
import { defaultOptions } from "./options.ts";
import { RolloutSplit } from "./rollout.ts";
import { routingState } from "./routing-state.ts";
import { Service } from "./service.ts";
import { Target, type TargetHealth } from "./target.ts";
import { serviceView } from "./view.ts";

function target(address: string, health: TargetHealth = "healthy"): Target {
  const t = new Target(address);
  t.health = health;
  return t;
}

function service() {
  const s = new Service("web", defaultOptions({ hosts: ["app.test"], pathPrefixes: ["/", "/api"], tls: true }), [target("w1:80"), target("w2:80", "unhealthy")]);
  s.cutover({ readers: [target("r1:80")], rollout: [target("c1:80")] });
  s.split = new RolloutSplit(25, ["beta"]);
  return s;
}

test("serviceView lists every target with its state and role, draining and adding ones too", () => {
  const s = service();
  const old = s.targets[1]!;
  s.cutover({ writers: [s.targets[0]!] }); // w2 now draining
  s.adding.set(target("new:80", "adding"), { address: "new:80", health: "adding", lastCheck: "GET /up returned 503", lastCheckAt: Date.UTC(2026, 0, 2, 3, 4, 5) });
  s.adding.set(s.targets[0]!, { address: "w1:80", health: "adding", lastCheck: "not checked yet" }); // a live target being re-checked is not shown twice
  s.targets[0]!.lastCheck = "GET /up returned 200";
  s.targets[0]!.lastCheckAt = Date.UTC(2026, 0, 2, 3, 4, 0);
  expect(old.address).toBe("w2:80");
  expect(serviceView(s, { checkTimes: true })).toEqual({
    name: "web",
    hosts: ["app.test"],
    pathPrefixes: ["/", "/api"],
    tls: true,
    state: "running",
    targets: [
      { address: "w1:80", state: "healthy", role: "writer", lastCheck: "GET /up returned 200", lastCheckAt: "2026-01-02T03:04:00.000Z" },
      { address: "r1:80", state: "healthy", role: "reader", lastCheck: "not checked yet" },
      { address: "c1:80", state: "healthy", role: "rollout", lastCheck: "not checked yet" },
      { address: "w2:80", state: "draining", role: "draining", lastCheck: "not checked yet" },
      { address: "new:80", state: "adding", role: "adding", lastCheck: "GET /up returned 503", lastCheckAt: "2026-01-02T03:04:05.000Z" },
    ],
    rollout: { percent: 25, list: ["beta"] },
  });
  // `list` leaves the times out: its output stays the same while nothing changes.
  expect(serviceView(s).targets.map((t) => "lastCheckAt" in t)).toEqual([false, false, false, false, false]);
});

test("serviceView shows the stop message only while stopped, and no rollout without rollout targets", () => {
  const s = new Service("api", defaultOptions(), [target("a:80")]);
  s.pause.stop("back at noon");
  expect(serviceView(s).state).toBe("stopped");
  expect(serviceView(s).message).toBe("back at noon");
  s.pause.pause(1000);
  expect(serviceView(s).state).toBe("paused");
  expect("message" in serviceView(s)).toBe(false);
  expect("rollout" in serviceView(s)).toBe(false);
  const stoppedSilently = new Service("b", defaultOptions(), []);
  stoppedSilently.pause.stop("");
  expect("message" in serviceView(stoppedSilently)).toBe(false);
});

test("routingState carries what a worker needs: options, target sets with health, mode, split, pages", () => {
  const s = service();
  s.pause.pause(5000);
  const pages = new Map([[503, "<p>down</p>"]]);
  const state = routingState([s, new Service("plain", defaultOptions(), [target("p:80", "adding")])], (svc) => (svc.name === "web" ? pages : undefined));
  expect(state.services).toEqual([
    {
      name: "web",
      options: s.options,
      writers: [
        { address: "w1:80", health: "healthy" },
        { address: "w2:80", health: "unhealthy" },
      ],
      readers: [{ address: "r1:80", health: "healthy" }],
      rollout: [{ address: "c1:80", health: "healthy" }],
      mode: "paused",
      stopMessage: "",
      maxPauseMs: 5000,
      split: { percent: 25, list: ["beta"] },
      pages: [[503, "<p>down</p>"]],
    },
    {
      name: "plain",
      options: defaultOptions(),
      writers: [{ address: "p:80", health: "adding" }],
      readers: [],
      mode: "running",
      stopMessage: "",
      maxPauseMs: 30_000,
      split: { percent: 0, list: [] },
    },
  ]);
  // A snapshot: later changes do not show in it.
  s.split = new RolloutSplit(50);
  s.targets[0]!.health = "unhealthy";
  expect(state.services[0]!.split.percent).toBe(25);
  expect(state.services[0]!.writers[0]!.health).toBe("healthy");
  expect(JSON.parse(JSON.stringify(state))).toEqual(state);
});
