import { afterAll, expect, test } from "bun:test";
import { checkOnce, HealthCheck, type CheckResult, type Checked, type HealthCheckConfig } from "./health-check.ts";
import type { TargetHealth } from "./target.ts";

let status = 200;
const seen: { path: string; host: string | null; agent: string | null }[] = [];
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const url = new URL(req.url);
    seen.push({ path: url.pathname, host: req.headers.get("host"), agent: req.headers.get("user-agent") });
    if (url.pathname === "/hang") return new Promise<Response>(() => {});
    if (url.pathname === "/redirect") return new Response(null, { status: 302, headers: { location: "/up" } });
    if (url.pathname === "/no-content") return new Response(null, { status: 204 });
    if (url.pathname === "/host") return new Response("", { status: req.headers.get("host") === "app.test" ? 200 : 421 });
    if (url.pathname === "/status") return new Response("x".repeat(100_000), { status });
    return new Response("ok", { status: url.pathname === "/up" ? 200 : 500 });
  },
});
afterAll(() => server.stop(true));

const address = `127.0.0.1:${server.port}`;
const config = (path: string, more: Partial<HealthCheckConfig> = {}): HealthCheckConfig => ({ path, intervalMs: 10, timeoutMs: 2000, ...more });

/** A port nothing listens on: one a server just gave back. */
async function closedPort(): Promise<number> {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port!;
  await s.stop(true);
  return port;
}

test("a 2xx answer is healthy", async () => {
  expect(await checkOnce({ address }, config("/up"))).toEqual({ ok: true, description: "GET /up returned 200" });
  expect(await checkOnce({ address }, config("/no-content"))).toEqual({ ok: true, description: "GET /no-content returned 204" });
});

test("a 500 is unhealthy, with the status in the description", async () => {
  expect(await checkOnce({ address }, config("/broken"))).toEqual({ ok: false, description: "GET /broken returned 500" });
});

test("a redirect is not followed and is not healthy", async () => {
  const before = seen.length;
  expect(await checkOnce({ address }, config("/redirect"))).toEqual({ ok: false, description: "GET /redirect returned 302" });
  expect(seen.slice(before).map((r) => r.path)).toEqual(["/redirect"]);
});

test("the check sends its own User-Agent and, by default, the target's address as Host", async () => {
  const before = seen.length;
  await checkOnce({ address }, config("/up"));
  expect(seen.slice(before)).toEqual([{ path: "/up", host: address, agent: "parachute-health-check" }]);
});

test("a Host override is sent as the Host header", async () => {
  expect(await checkOnce({ address }, config("/host"))).toEqual({ ok: false, description: "GET /host returned 421" });
  expect(await checkOnce({ address }, config("/host", { host: "app.test" }))).toEqual({ ok: true, description: "GET /host returned 200" });
});

test("a port override replaces the target's port", async () => {
  const dead = await closedPort();
  expect((await checkOnce({ address: `127.0.0.1:${dead}` }, config("/up"))).ok).toBe(false);
  expect(await checkOnce({ address: `127.0.0.1:${dead}` }, config("/up", { port: server.port }))).toEqual({ ok: true, description: "GET /up returned 200" });
});

test("nothing listening: connection refused", async () => {
  const dead = await closedPort();
  expect(await checkOnce({ address: `127.0.0.1:${dead}` }, config("/up"))).toEqual({ ok: false, description: "GET /up failed: connection refused" });
});

test("no answer within the timeout: timed out after it, written as a duration", async () => {
  expect(await checkOnce({ address }, config("/hang", { timeoutMs: 50 }))).toEqual({ ok: false, description: "GET /hang timed out after 50ms" });
});

function recorder() {
  const changes: { health: TargetHealth; previous: TargetHealth; result: CheckResult }[] = [];
  let wake: (() => void) | undefined;
  return {
    changes,
    listener: (_t: Checked, health: TargetHealth, previous: TargetHealth, result: CheckResult) => {
      changes.push({ health, previous, result });
      wake?.();
    },
    /** Resolves once `n` changes have been reported. */
    until(n: number) {
      return new Promise<void>((resolve) => {
        const check = () => (changes.length >= n ? resolve() : (wake = check));
        check();
      });
    },
  };
}

test("HealthCheck: the first result counts as a change; a failing target stays adding until it first passes", async () => {
  const target: Checked = { address, health: "adding", lastCheck: "not checked yet" };
  const r = recorder();
  const check = new HealthCheck(target, config("/broken", { intervalMs: 10_000 }), r.listener).start();
  await r.until(1);
  check.stop();
  expect(r.changes).toEqual([{ health: "adding", previous: "adding", result: { ok: false, description: "GET /broken returned 500" } }]);
  expect(target.health).toBe("adding");
  expect(target.lastCheck).toBe("GET /broken returned 500");
});

test("HealthCheck: healthy, then unhealthy, then healthy again; only changes are reported", async () => {
  status = 200;
  const target: Checked = { address, health: "adding", lastCheck: "not checked yet" };
  const r = recorder();
  const check = new HealthCheck(target, config("/status", { intervalMs: 10 }), r.listener).start();
  await r.until(1);
  expect(r.changes[0]).toEqual({ health: "healthy", previous: "adding", result: { ok: true, description: "GET /status returned 200" } });
  expect(target.health).toBe("healthy");
  status = 503;
  await r.until(2);
  expect(r.changes[1]).toEqual({ health: "unhealthy", previous: "healthy", result: { ok: false, description: "GET /status returned 503" } });
  const checksBefore = seen.length;
  // Further failures are not changes: wait for a few more checks, then recover.
  while (seen.length < checksBefore + 3) await Bun.sleep(5);
  expect(r.changes.length).toBe(2);
  expect(target.lastCheck).toBe("GET /status returned 503");
  status = 200;
  await r.until(3);
  check.stop();
  expect(r.changes[2]).toEqual({ health: "healthy", previous: "unhealthy", result: { ok: true, description: "GET /status returned 200" } });
  expect(target.health).toBe("healthy");
});

test("HealthCheck: stopped, it checks no more", async () => {
  const target: Checked = { address, health: "adding", lastCheck: "" };
  const r = recorder();
  const check = new HealthCheck(target, config("/up", { intervalMs: 10 }), r.listener).start();
  await r.until(1);
  check.stop();
  await Bun.sleep(10); // let an in-flight check finish
  const count = seen.length;
  await Bun.sleep(40);
  expect(seen.length).toBe(count);
  expect(r.changes.length).toBe(1);
});

test("HealthCheck: startAfter waits before the first check; stopping before it means no check at all", async () => {
  const target: Checked = { address, health: "adding", lastCheck: "none" };
  const r = recorder();
  const before = seen.length;
  const check = new HealthCheck(target, config("/up"), r.listener).startAfter(30);
  await Bun.sleep(0);
  expect(seen.length).toBe(before);
  await r.until(1);
  check.stop();
  expect(r.changes[0]!.health).toBe("healthy");
  const stopped = new HealthCheck({ address, health: "adding", lastCheck: "none" }, config("/up"), r.listener).startAfter(10);
  stopped.stop();
  await Bun.sleep(30);
  expect(r.changes.length).toBe(1);
});
