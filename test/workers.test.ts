// `run --workers 2` (README "Workers"): a control plane and two worker
// processes sharing the ports. Every command acts as with one process, the
// metrics are totals, a killed worker comes back, and an upgrade replaces
// them all without a failed request.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { startBackend, type Backend } from "./support/backend.ts";
import { freePort, processAlive, Proxy, runCli, tempDir, waitFor } from "./support/proxy.ts";
import { isPending, mustRun } from "./support/traffic.ts";

const HOST = "app.test";
const fast = ["--health-check-interval", "100ms"];
let proxy: Proxy;
let metricsPort: number;
const backends: Backend[] = [];

function backend(name: string): Backend {
  const b = startBackend(name);
  backends.push(b);
  return b;
}

beforeAll(async () => {
  metricsPort = await freePort();
  proxy = await Proxy.start({ args: ["--workers", "2", "--metrics-port", String(metricsPort)] });
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  for (const b of backends) await b.stop();
});

/** A request on a connection of its own, so that either worker may accept it. */
async function fresh(path: string): Promise<{ status: number; backend: string }> {
  const res = await proxy.fetch(path, { host: HOST, headers: { connection: "close" } });
  await res.arrayBuffer();
  return { status: res.status, backend: res.headers.get("x-backend") ?? "" };
}

/** The worker number of each request line logged after `mark` for `path`. */
function workersThatServed(mark: number, path: string): Set<unknown> {
  return new Set(proxy.logs.slice(mark).filter((l) => l.msg === "Request" && String(l.path) === path).map((l) => l.worker));
}

/**
 * Runs `work` while every other worker is stopped (SIGSTOP), so that only
 * `worker` accepts connections: which worker the kernel wakes first is
 * otherwise up to the scheduler, and one worker may take a whole burst.
 */
async function onlyThrough<T>(worker: number, work: () => Promise<T>): Promise<T> {
  const others = [...proxy.workerPids()].filter(([n]) => n !== worker).map(([, pid]) => pid);
  for (const pid of others) process.kill(pid, "SIGSTOP");
  try {
    return await work();
  } finally {
    for (const pid of others) process.kill(pid, "SIGCONT");
  }
}

/** `loops` clients, each sending requests on new connections until stopped (bounded). */
function load(path: string, loops = 4) {
  const results: { status: number; backend: string; error?: string }[] = [];
  let stopped = false;
  const loop = async () => {
    for (let i = 0; i < 3000 && !stopped; i++) {
      results.push(await fresh(path).catch((error: Error) => ({ status: 0, backend: "", error: error.message })));
    }
  };
  const done = Promise.all(Array.from({ length: loops }, loop));
  return {
    results,
    reached: (n: number) => waitFor(`${n} answers`, () => results.length >= n, { timeoutMs: 20_000 }),
    stop: async () => {
      stopped = true;
      await done;
      return results;
    },
  };
}

async function metricValue(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

test("both workers serve; /metrics sums their requests; list is the same as with one process", async () => {
  const app = backend("one");
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", app.address, ...fast]);
  const mark = proxy.logMark();
  const before = await metricValue("parachute_requests_total", 'service="app",method="GET",status="200"');
  const answers = [
    ...(await onlyThrough(1, () => Promise.all(Array.from({ length: 30 }, () => fresh("/spread"))))),
    ...(await onlyThrough(2, () => Promise.all(Array.from({ length: 30 }, () => fresh("/spread"))))),
  ];
  expect(answers.every((a) => a.status === 200 && a.backend === "one")).toBe(true);
  await waitFor("60 request lines", () => proxy.logs.slice(mark).filter((l) => l.msg === "Request" && l.path === "/spread").length === 60);
  expect(workersThatServed(mark, "/spread")).toEqual(new Set([1, 2]));
  expect(await metricValue("parachute_requests_total", 'service="app",method="GET",status="200"')).toBe(before + 60);
  const listed = await proxy.listJson();
  expect(listed.map((s) => [s.name, s.state, s.targets.map((t) => [t.address, t.state])])).toEqual([["app", "running", [[app.address, "healthy"]]]]);
}, 30_000);

test("a redeploy under load fails nothing, and once it returns no worker sends to the old target", async () => {
  const [a, b] = [backend("a"), backend("b")];
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...fast]);
  const traffic = load("/echo");
  await traffic.reached(50);
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, ...fast]);
  const oldRequests = a.requests;
  const after = traffic.results.length;
  await traffic.reached(after + 100);
  const results = await traffic.stop();
  expect(results.filter((r) => r.status !== 200)).toEqual([]);
  expect(results.slice(after).filter((r) => r.backend !== "b")).toEqual([]);
  expect(a.requests).toBe(oldRequests);
}, 60_000);

test("pause holds requests in every worker until resume", async () => {
  const app = backend("paused");
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", app.address, ...fast]);
  await mustRun(proxy, ["pause", "app"]);
  const mark = proxy.logMark();
  const paused = () => metricValue("parachute_requests_paused", 'service="app"');
  // Six requests wait in each worker (a stopped worker's count is missing from the gauge meanwhile).
  const held: Promise<{ status: number; backend: string }>[] = [];
  for (const worker of [1, 2]) {
    await onlyThrough(worker, async () => {
      held.push(...Array.from({ length: 6 }, () => fresh("/held")));
      await waitFor(`6 requests held by worker ${worker}`, async () => (await paused()) === 6);
    });
  }
  await waitFor("12 requests held in all", async () => (await paused()) === 12);
  expect(held.every(isPending)).toBe(true);
  expect(app.requests).toBe(0);
  await mustRun(proxy, ["resume", "app"]);
  const answers = await Promise.all(held);
  expect(answers.every((a) => a.status === 200 && a.backend === "paused")).toBe(true);
  await waitFor("12 request lines", () => proxy.logs.slice(mark).filter((l) => l.msg === "Request" && l.path === "/held").length === 12);
  expect(workersThatServed(mark, "/held")).toEqual(new Set([1, 2]));
}, 30_000);

test("kill -9 of a worker under load: at most its requests in flight fail, and it is back within a second", async () => {
  const app = backend("survivor");
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", app.address, ...fast]);
  const traffic = load("/echo", 4);
  await traffic.reached(50);
  const victim = proxy.workerPids().get(1)!;
  const mark = proxy.logMark();
  const killedAt = performance.now();
  process.kill(victim, "SIGKILL");
  const restarted = await proxy.waitForLog((l) => l.msg === "Worker started" && l.worker === 1 && l.pid !== victim, 5_000, mark);
  const backWithin = performance.now() - killedAt;
  const count = traffic.results.length;
  await traffic.reached(count + 100);
  const results = await traffic.stop();
  expect(processAlive(victim)).toBe(false);
  expect(backWithin).toBeLessThan(1_000);
  // Four clients: at most one request each was in flight on the killed worker.
  expect(results.filter((r) => r.status !== 200).length).toBeLessThanOrEqual(4);
  expect(processAlive(Number(restarted.pid))).toBe(true);
  // And the new worker serves.
  const mark2 = proxy.logMark();
  const again = await onlyThrough(1, () => Promise.all(Array.from({ length: 10 }, () => fresh("/again"))));
  expect(again.every((a) => a.status === 200)).toBe(true);
  await waitFor("10 request lines", () => proxy.logs.slice(mark2).filter((l) => l.msg === "Request" && l.path === "/again").length === 10);
  expect(workersThatServed(mark2, "/again")).toEqual(new Set([1]));
}, 60_000);

test("upgrade of a parachute with workers: new control plane and workers, no failed request", async () => {
  const app = backend("upgraded");
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", app.address, ...fast]);
  const oldControl = proxy.serverPid;
  const oldWorkers = [...proxy.workerPids().values()];
  const mark = proxy.logMark();
  const traffic = load("/echo", 4);
  await traffic.reached(50);
  const upgraded = await proxy.cli(["upgrade"]);
  expect(upgraded.stderr).toContain("has finished its requests");
  expect(upgraded.code).toBe(0);
  const count = traffic.results.length;
  await traffic.reached(count + 100);
  const results = await traffic.stop();
  expect(results.filter((r) => r.status !== 200)).toEqual([]);
  // The old workers exit; the old control plane, the process that was started, stays as the anchor.
  await waitFor("the old workers to exit", () => oldWorkers.every((pid) => !processAlive(pid)));
  expect(oldControl).toBe(proxy.pid);
  expect(processAlive(oldControl)).toBe(true);
  const started = proxy.logs.slice(mark).filter((l) => l.msg === "Worker started").map((l) => l.worker);
  expect(started.sort()).toEqual([1, 2]);
  expect(proxy.serverPid).not.toBe(oldControl);
  expect((await fresh("/echo")).backend).toBe("upgraded");
}, 60_000);

test("a bad worker count is refused, naming the value", async () => {
  for (const [args, env, named] of [
    [["--workers", "0"], {}, '"0"'],
    [["--workers", "many"], {}, '"many"'],
    [[], { WORKERS: "-2" }, '"-2"'],
  ] as const) {
    const result = await runCli(["run", "--http-port", "0", "--https-port", "0", "--state-dir", proxy.stateDir, "--socket", `${proxy.socket}.x`, ...args], env, { timeoutMs: 10_000 });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(named);
  }
});

test("every worker answers with the error pages as read at the last deploy, also after editing them and redeploying", async () => {
  const app = backend("paged");
  const pages = tempDir("parachute-pages-");
  fs.writeFileSync(path.join(pages, "503.html"), "<p>first {{message}}</p>");
  const deploy = ["deploy", "app", "--host", HOST, "--target", app.address, "--error-pages", pages, ...fast];
  await mustRun(proxy, deploy);
  await mustRun(proxy, ["stop", "app", "--message", "soon"]);
  const page = async () => {
    const res = await proxy.fetch("/", { host: HOST, headers: { connection: "close" } });
    return `${res.status} ${await res.text()}`;
  };
  for (const worker of [1, 2]) expect(await onlyThrough(worker, page)).toContain("first soon");
  fs.writeFileSync(path.join(pages, "503.html"), "<p>second {{message}}</p>");
  await mustRun(proxy, deploy);
  for (const worker of [1, 2]) expect(await onlyThrough(worker, page)).toBe("503 <p>second soon</p>");
  await mustRun(proxy, ["resume", "app"]);
}, 30_000);
