import { expect, test } from "bun:test";
import type { RoutingState, ServiceState } from "../service/routing-state.ts";
import { defaultOptions } from "../service/options.ts";
import type { InFlight } from "../service/target.ts";
import { ReplicaCertificates, ReplicaRoutes } from "./replica.ts";

const OPTIONS = defaultOptions({ hosts: ["app.test"], writerAffinityTimeout: 3000 });

function service(overrides: Partial<ServiceState> = {}): ServiceState {
  return {
    name: "app",
    options: OPTIONS,
    writers: [{ address: "a:1", health: "healthy" }],
    readers: [],
    mode: "running",
    stopMessage: "",
    maxPauseMs: 30_000,
    split: { percent: 0, list: [] },
    ...overrides,
  };
}

const state = (...services: ServiceState[]): RoutingState => ({ services });
const request = (): InFlight => ({ websocket: false, cancel: () => {} });

test("a state is routed as given: hosts, writers, health", () => {
  const routes = new ReplicaRoutes();
  routes.apply(state(service({ writers: [{ address: "a:1", health: "healthy" }, { address: "b:1", health: "unhealthy" }] })));
  const route = routes.router.match("app.test", "/x");
  expect(route?.service.name).toBe("app");
  const picks = new Set(Array.from({ length: 4 }, () => route!.service.pick(true, undefined, false).target?.address));
  expect(picks).toEqual(new Set(["a:1"]));
  expect(routes.router.match("other.test", "/")).toBeUndefined();
});

test("a target keeps its requests in flight across states; once it leaves, a drain waits for them", async () => {
  const routes = new ReplicaRoutes();
  routes.apply(state(service()));
  const old = routes.service("app")!.targets[0]!;
  const entry = request();
  old.begin(entry);
  routes.apply(state(service({ writers: [{ address: "b:1", health: "healthy" }] })));
  expect(routes.service("app")!.draining.has(old)).toBe(true);
  const drained = routes.drain("app", ["a:1"], 5_000, true);
  let done = false;
  void drained.then(() => (done = true));
  await Bun.sleep(0);
  expect(done).toBe(false);
  old.end(entry);
  expect(await drained).toBe(0);
  expect(routes.service("app")!.draining.size).toBe(0);
});

test("pause, stop and resume follow the state; requests held by a pause are released", async () => {
  const routes = new ReplicaRoutes();
  routes.apply(state(service({ mode: "paused", maxPauseMs: 10_000 })));
  const pause = routes.service("app")!.pause;
  const held = pause.wait();
  expect(pause.waiting).toBe(1);
  routes.apply(state(service({ mode: "stopped", stopMessage: "back soon" })));
  expect(await held).toBe("stopped");
  expect(pause.message).toBe("back soon");
  routes.apply(state(service()));
  expect(pause.mode).toBe("running");
});

test("a removed service stops routing, releases its held requests, and can still be drained", async () => {
  const routes = new ReplicaRoutes();
  routes.apply(state(service({ mode: "paused" })));
  const removed = routes.service("app")!;
  const held = removed.pause.wait();
  removed.targets[0]!.begin(request());
  routes.apply(state());
  expect(routes.router.match("app.test", "/")).toBeUndefined();
  expect(routes.service("app")).toBeUndefined();
  expect(await held).toBe("running");
  expect(await routes.drain("app", ["a:1"], 1, true)).toBe(1);
});

test("in-flight and paused counts by service, for the control plane's metrics", () => {
  const routes = new ReplicaRoutes();
  routes.apply(state(service({ mode: "paused" })));
  routes.service("app")!.targets[0]!.begin(request());
  void routes.service("app")!.pause.wait();
  expect(routes.inFlight()).toEqual([{ service: "app", value: 1, paused: 1 }]);
});

test("a handshake waits for a certificate only while its order runs", async () => {
  const certificates = new ReplicaCertificates();
  expect(await certificates.waitFor("app.test", 1_000)).toBe(false);
  certificates.apply({ reset: true, removed: [], certificates: [], issuing: ["app.test"], challenges: [["token", "key-authorization"]], alpnChallenges: [{ host: "app.test", cert: "AC", key: "AK" }] });
  expect(certificates.challenge("token")).toBe("key-authorization");
  expect(certificates.alpnChallenge("app.test")).toEqual({ cert: "AC", key: "AK" });
  const waiting = certificates.waitFor("app.test", 5_000);
  certificates.apply({ reset: false, removed: [], certificates: [{ host: "app.test", cert: "C", key: "K" }], issuing: [], challenges: [], alpnChallenges: [] });
  expect(await waiting).toBe(true);
  expect(certificates.alpnChallenge("app.test")).toBeUndefined();
  expect(certificates.has("app.test")).toBe(true);
  expect(certificates.challenge("token")).toBeUndefined();

  certificates.apply({ reset: false, removed: [], certificates: [], issuing: ["failing.test"], challenges: [], alpnChallenges: [] });
  const failing = certificates.waitFor("failing.test", 5_000);
  certificates.apply({ reset: false, removed: [], certificates: [], issuing: [], challenges: [], alpnChallenges: [] });
  expect(await failing).toBe(false);
});

test("a name under a wildcard has the wildcard's certificate, and waits for the wildcard's order", async () => {
  const certificates = new ReplicaCertificates();
  certificates.apply({ reset: false, removed: [], certificates: [], issuing: ["*.example.com"], challenges: [], alpnChallenges: [] });
  expect(certificates.has("a.example.com")).toBe(false);
  const waiting = certificates.waitFor("a.example.com", 5_000);
  certificates.apply({ reset: false, removed: [], certificates: [{ host: "*.example.com", cert: "C", key: "K" }], issuing: [], challenges: [], alpnChallenges: [] });
  expect(await waiting).toBe(true);
  expect(certificates.has("a.example.com")).toBe(true);
  // One label only (RFC 6125 §6.4.3), as the router matches it.
  expect(certificates.has("b.a.example.com")).toBe(false);
  expect(certificates.has("example.com")).toBe(false);
});

test("TLS states are changes: new and replaced certificates, removed hosts, or everything at a reset", () => {
  const certificates = new ReplicaCertificates();
  const empty = { removed: [], issuing: [], challenges: [], alpnChallenges: [] };
  const a = { host: "a.test", cert: "A", key: "KA" };
  const b = { host: "b.test", cert: "B", key: "KB" };
  expect(certificates.apply({ ...empty, reset: true, certificates: [a, b] })).toBe(true);
  expect(certificates.apply({ ...empty, reset: false, certificates: [] })).toBe(false);
  expect(certificates.apply({ ...empty, reset: false, certificates: [{ ...a, cert: "A2" }], removed: ["b.test"] })).toBe(true);
  expect(certificates.entries()).toEqual([{ host: "a.test", cert: "A2", key: "KA" }]);
  certificates.apply({ ...empty, reset: true, certificates: [b] });
  expect(certificates.entries()).toEqual([b]);
});

test("an on-demand ask goes to the control plane and resolves with its answer", async () => {
  const sent: [number, string, string][] = [];
  const certificates = new ReplicaCertificates(undefined, (request, host, service) => sent.push([request, host, service]));
  const first = certificates.requestOnDemand("a.test", "app");
  const second = certificates.requestOnDemand("b.test", "app");
  expect(sent).toEqual([[1, "a.test", "app"], [2, "b.test", "app"]]);
  certificates.answered(2, false);
  certificates.answered(1, true);
  expect(await first).toBe(true);
  expect(await second).toBe(false);
});
