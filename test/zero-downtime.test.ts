// Zero-downtime deploys (README "How it works"): clients hammering the proxy while the
// service is redeployed over and over must never see anything but a 200 from
// one of the real backends, and slow requests caught at a cutover finish on
// the target they started on.
import { beforeAll, expect, test } from "bun:test";
import { type Backend } from "./support/backend.ts";
import { useProxy } from "./support/fixture.ts";
import { Proxy, waitFor } from "./support/proxy.ts";

const fixture = useProxy();
const backend = fixture.backend;
let proxy: Proxy;
beforeAll(() => {
  proxy = fixture.proxy;
});

async function deploy(service: string, host: string, target: Backend, extra: string[] = []) {
  const result = await proxy.cli(["deploy", service, "--host", host, "--target", target.address, "--health-check-interval", "100ms", ...extra]);
  if (result.code !== 0) throw new Error(`deploy ${service} → ${target.name} exited ${result.code}: ${result.stderr}`);
  return result;
}

interface Tally {
  ok: number;
  byBackend: Map<string, number>;
  failures: string[];
}

/**
 * Starts `loops` client loops that request `/echo` through the proxy without
 * pause until `stop()` is called (or each loop's request cap is reached).
 * Every answer that is not a 200 from one of `expected` is a failure.
 */
function startLoad(host: string, loops: number, expected: () => Set<string>, maxPerLoop = 3000) {
  const tally: Tally = { ok: 0, byBackend: new Map(), failures: [] };
  let stopped = false;
  const loop = async () => {
    for (let i = 0; i < maxPerLoop && !stopped; i++) {
      try {
        const res = await proxy.fetch(`/echo?loop=${i}`, { host });
        const body = await res.text();
        const name = res.headers.get("x-backend") ?? "";
        if (res.status === 200 && expected().has(name)) {
          tally.ok++;
          tally.byBackend.set(name, (tally.byBackend.get(name) ?? 0) + 1);
        } else {
          tally.failures.push(`${res.status} from "${name}": ${body.slice(0, 120)}`);
        }
      } catch (error) {
        tally.failures.push(`request failed: ${(error as Error).message}`);
      }
    }
  };
  const done = Promise.all(Array.from({ length: loops }, loop));
  return {
    tally,
    async stop() {
      stopped = true;
      await done;
      return tally;
    },
  };
}

test("20 client loops see only 200s while the service is redeployed 10 times between two backends", async () => {
  const host = "zd.test";
  const blue = backend("blue");
  const green = backend("green");
  await deploy("zd", host, blue);

  const load = startLoad(host, 20, () => new Set(["blue", "green"]));
  try {
    // Traffic is flowing before the first redeploy.
    await waitFor("first responses", () => load.tally.ok >= 40 || load.tally.failures.length > 0);
    let current = blue;
    for (let i = 0; i < 10; i++) {
      const next = current === blue ? green : blue;
      const nextBefore = next.requests;
      await deploy("zd", host, next);
      // Once deploy has returned, the old target has drained and must get nothing more:
      // sample its request count now and check it did not move by the next deploy.
      const oldAfterDeploy = current.requests;
      const okBefore = load.tally.ok;
      // Let real traffic hit the new target before switching again.
      await waitFor(`traffic on ${next.name} after deploy ${i + 1}`, () => next.requests > nextBefore && load.tally.ok >= okBefore + 40);
      expect(current.requests).toBe(oldAfterDeploy);
      current = next;
    }
  } finally {
    await load.stop();
  }

  const { ok, byBackend, failures } = load.tally;
  expect(failures.slice(0, 5)).toEqual([]);
  expect(failures.length).toBe(0);
  expect(ok).toBeGreaterThan(400);
  expect(byBackend.get("blue") ?? 0).toBeGreaterThan(0);
  expect(byBackend.get("green") ?? 0).toBeGreaterThan(0);
  expect((byBackend.get("blue") ?? 0) + (byBackend.get("green") ?? 0)).toBe(ok);
}, 45_000);

test("slow requests in flight at a cutover finish with 200 from the old target", async () => {
  const host = "slow-cutover.test";
  const oldTarget = backend("old");
  const newTarget = backend("new");
  await deploy("slowcut", host, oldTarget);

  // Some fast traffic keeps flowing through the cutover too.
  const load = startLoad(host, 4, () => new Set(["old", "new"]));
  const slow = Array.from({ length: 6 }, async (_, i) => {
    const res = await proxy.fetch(`/slow?ms=${1000 + i * 200}`, { host });
    return { status: res.status, backend: res.headers.get("x-backend"), body: await res.text() };
  });
  try {
    await waitFor("slow requests to reach the old target", () => oldTarget.inflight >= 6, { timeoutMs: 5000 });
    const slowSeenByNew = () => newTarget.seen.filter((s) => new URL(s.url).pathname === "/slow").length;
    await deploy("slowcut", host, newTarget);

    const results = await Promise.all(slow);
    for (const r of results) {
      expect(r).toEqual({ status: 200, backend: "old", body: "slow from old" });
    }
    // None of them was retried on (or moved to) the new target.
    expect(slowSeenByNew()).toBe(0);

    // New requests go to the new target.
    const after = await proxy.fetch("/echo", { host });
    expect(after.status).toBe(200);
    expect(after.headers.get("x-backend")).toBe("new");
    await after.text();
  } finally {
    await load.stop();
  }
  expect(load.tally.failures).toEqual([]);
  expect(load.tally.byBackend.get("new") ?? 0).toBeGreaterThan(0);
}, 20_000);

test("kamal-style: the old backend is shut down as soon as deploy returns, and no client notices", async () => {
  const host = "kamal.test";
  let current = backend("v0");
  await deploy("kamal", host, current);
  const live = new Set(["v0"]);

  const load = startLoad(host, 10, () => live);
  try {
    await waitFor("first responses", () => load.tally.ok >= 20 || load.tally.failures.length > 0);
    for (let version = 1; version <= 4; version++) {
      const next = backend(`v${version}`);
      live.add(next.name);
      await deploy("kamal", host, next);
      // deploy returned: the old target has drained, so it can go away at once.
      await current.stop();
      live.delete(current.name);
      const okBefore = load.tally.ok;
      await waitFor(`traffic on v${version}`, () => load.tally.ok >= okBefore + 20);
      current = next;
    }
  } finally {
    await load.stop();
  }
  expect(load.tally.failures.slice(0, 5)).toEqual([]);
  expect(load.tally.byBackend.get("v4") ?? 0).toBeGreaterThan(0);
}, 30_000);
