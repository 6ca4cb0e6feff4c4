// Rollout (README "Traffic control"): a second, health-checked target set beside the active
// one; clients are split by the value of their `parachute-rollout` cookie:
// listed values always, plus a stable N% of the others. No cookie means the
// active set. `rollout stop` sends everyone back; the rollout survives a
// restart and shows in `list`.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { type Backend } from "./support/backend.ts";
import { useProxy } from "./support/fixture.ts";
import { Proxy } from "./support/proxy.ts";
import { backendOf, eventually, getService, mustRun, restart, snapshot } from "./support/traffic.ts";

/** Per-test bound: generous next to the few seconds each test needs on a busy 2-core machine. */
const TIMEOUT = 30_000;
// bunfig's `[test] timeout` is not a Bun setting (the default stays 5 s), so hooks get the bound here.
setDefaultTimeout(TIMEOUT);

const fixture = useProxy();
const backend = fixture.backend;
let proxy: Proxy;
beforeAll(() => {
  proxy = fixture.proxy;
});

const withCookie = (value: string): RequestInit => ({ headers: { cookie: `session=abc; parachute-rollout=${value}` } });

/** Which backend each cookie value is sent to, in batches of concurrent requests. */
async function sides(p: Proxy, host: string, values: string[], batch = 50): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  for (let i = 0; i < values.length; i += batch) {
    const chunk = values.slice(i, i + batch);
    const names = await Promise.all(chunk.map((v) => backendOf(p, host, withCookie(v))));
    chunk.forEach((v, j) => result.set(v, names[j]!));
  }
  return result;
}

async function noCookie(p: Proxy, host: string, n: number): Promise<Set<string>> {
  return new Set(await Promise.all(Array.from({ length: n }, () => backendOf(p, host))));
}

describe("rollout on one service", () => {
  const host = "ro.test";
  let active: Backend;
  let canary: Backend;
  const clients = Array.from({ length: 1000 }, (_, i) => `client-${i}`);

  beforeAll(async () => {
    active = backend("active");
    canary = backend("canary");
    await mustRun(proxy, ["deploy", "ro", "--host", host, "--target", active.address, "--health-check-interval", "200ms"]);
  });

  test("rollout set without rollout targets is an error and changes nothing", async () => {
    const before = await snapshot(proxy);
    const result = await proxy.cli(["rollout", "set", "ro", "--percent", "50", "--list", "beta"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^Error: .*rollout/m);
    expect(await snapshot(proxy)).toEqual(before);
    expect(await backendOf(proxy, host, withCookie("beta"))).toBe("active");
  }, TIMEOUT);

  test("rollout deploy health-checks the targets (unhealthy: refused with the deploy message)", async () => {
    const sick = backend("sick");
    sick.setHealth(500);
    const before = await snapshot(proxy);
    const failed = await proxy.cli(["rollout", "deploy", "ro", "--target", sick.address, "--deploy-timeout", "500ms"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`Error: target ${sick.address} failed to become healthy within 500ms (last check: GET /up returned 500)`);
    expect(await snapshot(proxy)).toEqual(before);

    const deployed = await proxy.cli(["rollout", "deploy", "ro", "--target", canary.address]);
    expect(deployed.code).toBe(0);
    expect(deployed.stderr).toContain(`Target ${canary.address}: healthy`);
    const service = await getService(proxy, "ro");
    expect(service!.targets).toEqual([
      { address: active.address, state: "healthy", role: "writer" },
      { address: canary.address, state: "healthy", role: "rollout" },
    ]);
    expect(service!.rollout).toEqual({ percent: 0, list: [] });
    expect(sick.requests).toBe(0);
  }, TIMEOUT);

  test("with no split set, every client stays on the active targets", async () => {
    const seen = await sides(proxy, host, clients.slice(0, 100));
    expect(new Set(seen.values())).toEqual(new Set(["active"]));
    expect(await noCookie(proxy, host, 10)).toEqual(new Set(["active"]));
    expect(canary.requests).toBe(0);
  }, TIMEOUT);

  test("allow-listed cookie values always reach the rollout targets; others and no cookie stay active", async () => {
    const set = await proxy.cli(["rollout", "set", "ro", "--list", "beta-1", "--list", "beta-2"]);
    expect(set.code).toBe(0);
    expect((await getService(proxy, "ro"))!.rollout).toEqual({ percent: 0, list: ["beta-1", "beta-2"] });
    for (let i = 0; i < 10; i++) {
      expect(await backendOf(proxy, host, withCookie("beta-1"))).toBe("canary");
      expect(await backendOf(proxy, host, withCookie("beta-2"))).toBe("canary");
    }
    // Any method, not only reads.
    expect(await backendOf(proxy, host, { ...withCookie("beta-1"), method: "POST", body: "x" })).toBe("canary");
    // kamal-proxy's cookie name counts when there is no parachute-rollout cookie, and only then.
    expect(await backendOf(proxy, host, { headers: { cookie: "kamal-rollout=beta-1" } })).toBe("canary");
    expect(await backendOf(proxy, host, { headers: { cookie: "parachute-rollout=other; kamal-rollout=beta-1" } })).toBe("active");
    const others = await sides(proxy, host, clients.slice(0, 50));
    expect(new Set(others.values())).toEqual(new Set(["active"]));
    expect(await noCookie(proxy, host, 10)).toEqual(new Set(["active"]));
  }, TIMEOUT);

  test("--percent 30 sends 30% ± 5 of 1,000 distinct cookie values to the rollout, each always to the same side", async () => {
    const set = await proxy.cli(["rollout", "set", "ro", "--percent", "30", "--list", "beta-1"]);
    expect(set.code).toBe(0);
    expect((await getService(proxy, "ro"))!.rollout).toEqual({ percent: 30, list: ["beta-1"] });

    const first = await sides(proxy, host, clients);
    const share = [...first.values()].filter((b) => b === "canary").length / clients.length;
    expect(share).toBeGreaterThanOrEqual(0.25);
    expect(share).toBeLessThanOrEqual(0.35);
    expect(new Set(first.values())).toEqual(new Set(["active", "canary"]));

    // Sticky: the same cookie gets the same side, request after request.
    const sample = clients.slice(0, 200);
    for (let round = 0; round < 2; round++) {
      const again = await sides(proxy, host, sample);
      expect(sample.filter((v) => again.get(v) !== first.get(v))).toEqual([]);
    }
    expect(await backendOf(proxy, host, withCookie("beta-1"))).toBe("canary");
    expect(await noCookie(proxy, host, 20)).toEqual(new Set(["active"]));

    const text = await proxy.cli(["list"]);
    expect(text.stdout).toContain(canary.address);
    expect(text.stdout).toContain("[rollout]");
    expect(text.stdout).toMatch(/rollout ro: 30% .*beta-1/);
  }, TIMEOUT);

  test("no cookie means the active targets even at --percent 100", async () => {
    expect((await proxy.cli(["rollout", "set", "ro", "--percent", "100"])).code).toBe(0);
    const seen = await sides(proxy, host, clients.slice(0, 100));
    expect(new Set(seen.values())).toEqual(new Set(["canary"]));
    expect(await noCookie(proxy, host, 20)).toEqual(new Set(["active"]));
    // An empty cookie value is no cookie value.
    expect(await backendOf(proxy, host, withCookie(""))).toBe("active");
  }, TIMEOUT);

  test("rollout stop sends everyone back to the active targets", async () => {
    const stopped = await proxy.cli(["rollout", "stop", "ro"]);
    expect(stopped.code).toBe(0);
    const service = await getService(proxy, "ro");
    expect(service!.rollout).toBeUndefined();
    expect(service!.targets.map((t) => [t.address, t.role])).toEqual([[active.address, "writer"]]);
    const canaryServed = canary.requests;
    const seen = await sides(proxy, host, ["beta-1", "beta-2", ...clients.slice(0, 100)]);
    expect(new Set(seen.values())).toEqual(new Set(["active"]));
    expect(canary.requests).toBe(canaryServed);
    // With the rollout targets gone, setting a split is an error again.
    expect((await proxy.cli(["rollout", "set", "ro", "--percent", "10"])).code).toBe(1);
  }, TIMEOUT);
});

describe("a failed rollout deploy", () => {
  test("a lone rollout target that fails its checks: its clients fall back to the active targets, and a failed rollout deploy leaves it as it was", async () => {
    const host = "ro-sick.test";
    const stable = backend("ro-sick-stable");
    const canary = backend("ro-sick-canary");
    await mustRun(proxy, ["deploy", "rosick", "--host", host, "--target", stable.address, "--health-check-interval", "100ms"]);
    await mustRun(proxy, ["rollout", "deploy", "rosick", "--target", canary.address]);
    await mustRun(proxy, ["rollout", "set", "rosick", "--list", "beta"]);
    expect(await backendOf(proxy, host, withCookie("beta"))).toBe("ro-sick-canary");
    // The lone rollout target starts failing /up: beta clients go to the active targets meanwhile.
    canary.setHealth(500);
    await eventually("the canary to be unhealthy", async () => (await getService(proxy, "rosick"))?.targets.some((t) => t.role === "rollout" && t.state === "unhealthy"));
    expect(await backendOf(proxy, host, withCookie("beta"))).toBe("ro-sick-stable");
    const before = await snapshot(proxy);

    const failed = await proxy.cli(["rollout", "deploy", "rosick", "--target", canary.address, "--deploy-timeout", "500ms"]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`Error: target ${canary.address} failed to become healthy within 500ms`);
    expect(await snapshot(proxy)).toEqual(before);
    for (let i = 0; i < 5; i++) expect(await backendOf(proxy, host, withCookie("beta"))).toBe("ro-sick-stable");
    expect(await noCookie(proxy, host, 5)).toEqual(new Set(["ro-sick-stable"]));
    // Healthy again, it gets its clients back.
    canary.setHealth(200);
    await eventually("the canary to be healthy", async () => (await getService(proxy, "rosick"))?.targets.some((t) => t.role === "rollout" && t.state === "healthy"));
    expect(await backendOf(proxy, host, withCookie("beta"))).toBe("ro-sick-canary");
  }, TIMEOUT);
});

describe("rollout and restart", () => {
  let restartable: Proxy | undefined;

  afterAll(async () => {
    await restartable?.stop();
  });

  test("the rollout targets and split survive a restart, and each client keeps its side", async () => {
    const p = (restartable = await Proxy.start());
    const host = "ro-restart.test";
    const stable = backend("stable");
    const next = backend("next");
    await mustRun(p, ["deploy", "rr", "--host", host, "--target", stable.address]);
    await mustRun(p, ["rollout", "deploy", "rr", "--target", next.address]);
    await mustRun(p, ["rollout", "set", "rr", "--percent", "50", "--list", "vip"]);
    const values = Array.from({ length: 100 }, (_, i) => `visitor-${i}`);
    const before = await sides(p, host, values);
    expect(new Set(before.values())).toEqual(new Set(["stable", "next"]));

    expect(await restart(p)).toBe(0);

    const service = await getService(p, "rr");
    expect(service!.rollout).toEqual({ percent: 50, list: ["vip"] });
    expect(service!.targets.map((t) => [t.address, t.role])).toEqual([
      [stable.address, "writer"],
      [next.address, "rollout"],
    ]);
    expect(await backendOf(p, host, withCookie("vip"))).toBe("next");
    const after = await sides(p, host, values);
    expect(values.filter((v) => after.get(v) !== before.get(v))).toEqual([]);
    expect(await noCookie(p, host, 10)).toEqual(new Set(["stable"]));
  }, TIMEOUT);
});
