// `parachute deploy` (README "How it works"): health-check gating, failure messages and
// rollback, progress output, --force, health-check options, load balancing,
// option changes on redeploy, and --target-timeout.
import { beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { deadPort, type Backend } from "./support/backend.ts";
import { useProxy } from "./support/fixture.ts";
import { Proxy, waitFor, SLOW_TEST } from "./support/proxy.ts";

const fixture = useProxy();
const backend = fixture.backend;
let proxy: Proxy;
beforeAll(() => {
  proxy = fixture.proxy;
});

const fast = ["--health-check-interval", "100ms"];

async function deployOk(service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...fast, ...args]);
  expect(result.stderr).not.toContain("Error");
  expect(result.code).toBe(0);
  return result;
}

async function get(path: string, host: string) {
  const res = await proxy.fetch(path, { host });
  const body = await res.text();
  return { status: res.status, backend: res.headers.get("x-backend"), body };
}

test("a target that never becomes healthy fails the deploy; the old target keeps serving", async () => {
  const host = "unhealthy.test";
  const good = backend("good");
  const bad = backend("bad");
  bad.setHealth(500);
  await deployOk("unhealthy", ["--host", host, "--target", good.address]);

  const started = performance.now();
  // The failed deploy also asks for other options: none of them may take effect either.
  const result = await proxy.cli(["deploy", "unhealthy", "--host", host, "--target", bad.address, "--path-prefix", "/v2", "--deploy-timeout", "1s", ...fast]);
  const elapsed = performance.now() - started;
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(
    `Error: target ${bad.address} failed to become healthy within 1s (last check: GET /up returned 500)`,
  );
  // It waited for the deploy timeout ...
  expect(elapsed).toBeGreaterThanOrEqual(950);
  // Progress on stderr showed the failing check while it waited.
  expect(result.stderr).toMatch(new RegExp(`${bad.address}.*adding`));
  expect(result.stderr).toMatch(new RegExp(`${bad.address}.*GET /up returned 500`));
  // ... checking at the requested interval (100ms over 1s), not just once,
  // and not much longer (20 checks would be 2 s).
  expect(bad.healthChecks).toBeGreaterThanOrEqual(4);
  expect(bad.healthChecks).toBeLessThanOrEqual(20);

  // Nothing changed: the old target still serves, with the old options, and is the only one listed.
  for (let i = 0; i < 5; i++) expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "good" });
  const path = new URL(JSON.parse((await get("/v2/x", host)).body).url).pathname;
  expect(path).toBe("/v2/x"); // no /v2 prefix was installed (it would have been stripped)
  const listed = (await proxy.listJson()).find((s) => s.name === "unhealthy");
  expect(listed?.pathPrefixes).toEqual(["/"]);
  expect(listed?.targets).toEqual([expect.objectContaining({ address: good.address, state: "healthy" })]);
  expect(bad.requests).toBe(0);
}, SLOW_TEST);

test("a failed redeploy of a lone target that fails its checks but still answers changes nothing", async () => {
  const host = "lone-sick.test";
  const app = backend("lone-sick");
  await deployOk("lonesick", ["--host", host, "--target", app.address]);
  // /up starts failing; the other paths still answer, and the lone target keeps serving them.
  app.setHealth(500);
  await waitFor("the monitor to mark the target unhealthy", async () => {
    const service = (await proxy.listJson()).find((s) => s.name === "lonesick");
    return service?.targets.some((t) => t.address === app.address && t.state === "unhealthy");
  });
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "lone-sick" });
  const before = await proxy.cli(["list", "--json"]);
  const savedBefore = fs.readFileSync(proxy.stateFile, "utf8");

  const mark = proxy.logMark();
  const deploying = proxy.cli(["deploy", "lonesick", "--host", host, "--target", app.address, "--deploy-timeout", "1500ms", ...fast]);
  // While the deploy checks the target, it is served as before.
  await proxy.waitForLog((l) => l.msg === "Deploying" && l.service === "lonesick", 5000, mark);
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "lone-sick" });
  expect(Bun.peek.status(deploying)).toBe("pending");
  const result = await deploying;
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`Error: target ${app.address} failed to become healthy within 1500ms (last check: GET /up returned 500)`);

  // Afterwards: same list, same state file, same answers.
  for (let i = 0; i < 5; i++) expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "lone-sick" });
  expect((await proxy.cli(["list", "--json"])).stdout).toBe(before.stdout);
  expect(fs.readFileSync(proxy.stateFile, "utf8")).toBe(savedBefore);
  // And its checks still count: once /up passes again, it is healthy.
  app.setHealth(200);
  await waitFor("the monitor to mark the target healthy again", async () => {
    const service = (await proxy.listJson()).find((s) => s.name === "lonesick");
    return service?.targets.some((t) => t.address === app.address && t.state === "healthy");
  });
}, SLOW_TEST);

test("a dead port fails the deploy naming the target and its last check", async () => {
  const host = "deadport.test";
  const good = backend("good-2");
  const port = await deadPort();
  await deployOk("deadport", ["--host", host, "--target", good.address]);

  const result = await proxy.cli(["deploy", "deadport", "--host", host, "--target", `127.0.0.1:${port}`, "--deploy-timeout", "1s", ...fast]);
  expect(result.code).toBe(1);
  expect(result.stderr).toMatch(
    new RegExp(`Error: target 127\\.0\\.0\\.1:${port} failed to become healthy within 1s \\(last check: GET /up [^)]+\\)`),
  );
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "good-2" });
}, SLOW_TEST);

test("with several new targets, the error names only the unhealthy one and nothing changes", async () => {
  const host = "partial.test";
  const old = backend("partial-old");
  const fine = backend("partial-fine");
  const sick = backend("partial-sick");
  sick.setHealth(503);
  await deployOk("partial", ["--host", host, "--target", old.address]);

  const result = await proxy.cli(["deploy", "partial", "--host", host, "--target", `${fine.address},${sick.address}`, "--deploy-timeout", "1s", ...fast]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`Error: target ${sick.address} failed to become healthy within 1s (last check: GET /up returned 503)`);
  expect(result.stderr).not.toMatch(new RegExp(`Error: target ${fine.address}`));
  for (let i = 0; i < 4; i++) expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "partial-old" });
  expect(fine.requests + sick.requests).toBe(0);
  expect((await proxy.listJson()).find((s) => s.name === "partial")?.targets.map((t) => t.address)).toEqual([old.address]);
}, SLOW_TEST);

test("while deploy waits for a new target, list shows it as adding next to the serving one", async () => {
  const host = "adding.test";
  const old = backend("adding-old");
  const next = backend("adding-next");
  next.setHealth(500);
  await deployOk("adding", ["--host", host, "--target", old.address]);

  const deploying = proxy.cli(["deploy", "adding", "--host", host, "--target", next.address, "--deploy-timeout", "10s", ...fast]);
  const during = await waitFor(
    "list --json to show the new target as adding",
    async () => {
      const service = (await proxy.listJson()).find((s) => s.name === "adding");
      return service?.targets.some((t) => t.address === next.address && t.state === "adding") ? service : undefined;
    },
    { timeoutMs: 5000, intervalMs: 50 },
  );
  expect(during.targets).toContainEqual(expect.objectContaining({ address: old.address, state: "healthy" }));
  // Still served by the old target meanwhile.
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "adding-old" });

  next.setHealth(200);
  const result = await deploying;
  expect(result.code).toBe(0);
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "adding-next" });
  expect((await proxy.listJson()).find((s) => s.name === "adding")?.targets).toEqual([
    expect.objectContaining({ address: next.address, state: "healthy" }),
  ]);
}, SLOW_TEST);

test("--health-check-timeout bounds each check", async () => {
  const host = "hc-timeout.test";
  const app = backend("hc-timeout");
  // Each check takes 600ms to answer: too slow for a 200ms check timeout...
  const tooShort = await proxy.cli(["deploy", "hctimeout", "--host", host, "--target", app.address, "--health-check-path", "/slow?ms=600", "--health-check-timeout", "200ms", "--deploy-timeout", "1s", ...fast]);
  expect(tooShort.code).toBe(1);
  expect(tooShort.stderr).toContain(`Error: target ${app.address} failed to become healthy within 1s (last check: GET /slow?ms=600 `);
  expect(await proxy.listJson()).not.toContainEqual(expect.objectContaining({ name: "hctimeout" }));
  // ...and fine for a 2s one.
  await deployOk("hctimeout", ["--host", host, "--target", app.address, "--health-check-path", "/slow?ms=600", "--health-check-timeout", "2s", "--deploy-timeout", "5s"]);
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "hc-timeout" });
}, SLOW_TEST);

test("a brand-new service whose target never becomes healthy is not created", async () => {
  // A proxy of its own, so "nothing was created" means an empty list.
  const p = await Proxy.start();
  const bad = backend("bad-new");
  bad.setHealth(500);
  try {
    const result = await p.cli(["deploy", "newsvc", "--target", bad.address, "--deploy-timeout", "1s", ...fast]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`Error: target ${bad.address} failed to become healthy within 1s (last check: GET /up returned 500)`);
    expect(await p.listJson()).toEqual([]);
    const list = await p.cli(["list"]);
    expect(list.stdout).not.toContain("newsvc");
    const res = await p.fetch("/echo");
    expect(res.status).toBe(404);
    await res.text();
    expect(bad.requests).toBe(0);
    // Nothing was persisted either.
    const saved = fs.existsSync(p.stateFile) ? (JSON.parse(fs.readFileSync(p.stateFile, "utf8")) as { services: { name: string }[] }).services : [];
    expect(saved.map((s) => s.name)).not.toContain("newsvc");
  } finally {
    await p.stop();
  }
}, SLOW_TEST);

test("deploy prints progress to stderr (adding, then healthy) and its result to stdout", async () => {
  const host = "progress.test";
  const slowToStart = backend("progress");
  slowToStart.setHealth(503);
  // The target becomes healthy after a few failing checks.
  const deploying = proxy.cli(["deploy", "progress", "--host", host, "--target", slowToStart.address, "--deploy-timeout", "10s", ...fast]);
  // Let a few checks fail before the target comes up.
  await waitFor("three failing health checks", () => slowToStart.healthChecks >= 3, { timeoutMs: 5000 });
  slowToStart.setHealth(200);
  const result = await deploying;
  expect(result.code).toBe(0);
  const lines = result.stderr.split("\n").filter((l) => l.includes(slowToStart.address));
  const adding = lines.findIndex((l) => /adding/.test(l));
  const failing = lines.findIndex((l) => /GET \/up returned 503/.test(l));
  const healthy = lines.findIndex((l) => /healthy/.test(l) && !/not healthy/.test(l) && !/unhealthy/.test(l));
  expect(adding).toBeGreaterThanOrEqual(0);
  expect(failing).toBeGreaterThan(adding);
  expect(healthy).toBeGreaterThan(failing);
  // One line per state change, not one per check: the repeated 503 is reported once.
  expect(lines.filter((l) => /GET \/up returned 503/.test(l)).length).toBe(1);
  // The result, and nothing else, goes to stdout: a script can read it.
  expect(result.stdout).toBe(`Deployed progress to ${slowToStart.address}\n`);
  expect(result.stderr).not.toContain("Deployed");
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "progress" });
}, SLOW_TEST);

test("--force skips the health checks", async () => {
  const host = "force.test";
  const unhealthy = backend("forced");
  unhealthy.setHealth(500);
  const result = await proxy.cli(["deploy", "force", "--host", host, "--target", unhealthy.address, "--force", "--deploy-timeout", "5s", ...fast]);
  // The target only ever answers its checks with 500: a deploy that waited for
  // a passing check would have failed at the deploy timeout instead.
  expect(result.code).toBe(0);
  expect(result.stderr).not.toContain("GET /up returned 500");
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "forced" });
  expect((await proxy.listJson()).find((s) => s.name === "force")?.targets.map((t) => t.address)).toEqual([unhealthy.address]);
}, SLOW_TEST);

test("--health-check-path and --health-check-host are what the target sees", async () => {
  const host = "hc-path.test";
  const app = backend("hc-path");
  app.setHealth(500); // /up fails, so only the custom path can make it healthy
  await deployOk("hcpath", ["--host", host, "--target", app.address, "--health-check-path", "/internal/health", "--health-check-host", "health.internal", "--deploy-timeout", "3s"]);
  const check = app.seen.find((s) => new URL(s.url).pathname === "/internal/health");
  expect(check).toBeDefined();
  expect(check!.method).toBe("GET");
  expect(check!.headers.host).toBe("health.internal");
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "hc-path" });
}, SLOW_TEST);

test("--health-check-port checks another port than the one traffic goes to", async () => {
  const host = "hc-port.test";
  const app = backend("hc-app");
  app.setHealth(500); // the app port itself would fail the check
  const sidecar = backend("hc-sidecar");
  await deployOk("hcport", ["--host", host, "--target", app.address, "--health-check-port", String(sidecar.port), "--health-check-path", "/sidecar-health", "--deploy-timeout", "3s"]);
  expect(sidecar.seen.some((s) => new URL(s.url).pathname === "/sidecar-health")).toBe(true);
  expect(app.seen.some((s) => new URL(s.url).pathname === "/sidecar-health")).toBe(false);
  // Traffic still goes to the target's own port.
  expect(await get("/echo", host)).toMatchObject({ status: 200, backend: "hc-app" });
}, SLOW_TEST);

test("--health-check-port 0 (kamal-proxy's default) checks the target's own port", async () => {
  const host = "hc-port-zero.test";
  const app = backend("hc-zero");
  await deployOk("hcportzero", ["--host", host, "--target", app.address, "--health-check-port", "0", "--health-check-path", "/zero-health"]);
  expect(app.seen.some((s) => new URL(s.url).pathname === "/zero-health")).toBe(true);
  const saved = JSON.parse(fs.readFileSync(proxy.stateFile, "utf8")).services.find((s: { name: string }) => s.name === "hcportzero");
  expect(saved.options.healthCheckPort).toBeUndefined();
}, SLOW_TEST);

test("several targets are load-balanced round robin", async () => {
  const host = "rr.test";
  const a = backend("rr-a");
  const b = backend("rr-b");
  const c = backend("rr-c");
  await deployOk("rr", ["--host", host, "--target", `${a.address},${b.address}`, "--target", c.address]);
  const counts = new Map<string, number>();
  const order: string[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await get("/echo", host);
    expect(r.status).toBe(200);
    order.push(r.backend!);
    counts.set(r.backend!, (counts.get(r.backend!) ?? 0) + 1);
  }
  expect(Object.fromEntries(counts)).toEqual({ "rr-a": 10, "rr-b": 10, "rr-c": 10 });
  // Strict rotation: no target twice in a row.
  for (let i = 1; i < order.length; i++) expect(order[i]).not.toBe(order[i - 1]);
}, SLOW_TEST);

test("redeploying the same target with changed options applies them without dropping traffic", async () => {
  const host = "options.test";
  const app = backend("opts");
  await deployOk("opts", ["--host", host, "--target", app.address]);
  let r = await get("/api/items?x=1", host);
  expect(r.status).toBe(200);
  expect(new URL(JSON.parse(r.body).url).pathname).toBe("/api/items");

  // Traffic during the redeploy: every request answered 200 (either before or after the change).
  let stop = false;
  const statuses: number[] = [];
  const loops = Array.from({ length: 4 }, async () => {
    for (let i = 0; i < 500 && !stop; i++) statuses.push((await get("/api/items", host)).status);
  });
  await deployOk("opts", ["--host", host, "--target", app.address, "--path-prefix", "/api"]);
  stop = true;
  await Promise.all(loops);
  expect(statuses.length).toBeGreaterThan(0);
  expect(statuses.filter((s) => s !== 200)).toEqual([]);

  r = await get("/api/items?x=1", host);
  expect(r.status).toBe(200);
  const seen = new URL(JSON.parse(r.body).url);
  expect(seen.pathname + seen.search).toBe("/items?x=1");
  expect((await get("/other", host)).status).toBe(404);
  const listed = (await proxy.listJson()).find((s) => s.name === "opts");
  expect(listed?.pathPrefixes).toEqual(["/api"]);
  expect(listed?.targets).toEqual([expect.objectContaining({ address: app.address, state: "healthy" })]);

  // And back again, with stripping turned off.
  await deployOk("opts", ["--host", host, "--target", app.address, "--path-prefix", "/api", "--no-strip-path-prefix"]);
  r = await get("/api/items", host);
  expect(new URL(JSON.parse(r.body).url).pathname).toBe("/api/items");
}, SLOW_TEST);

test("--target-timeout cuts a target that is slow to answer (504) but not a long body that started quickly", async () => {
  const host = "target-timeout.test";
  const app = backend("tt");
  await deployOk("tt", ["--host", host, "--target", app.address, "--target-timeout", "500ms"]);

  const slow = await get("/slow?ms=3000", host);
  // Cut before the app's answer at 3 s, which would have been its 200.
  expect(slow.status).toBe(504);
  expect(slow.backend).toBeNull(); // the proxy's own error page, not the app

  const started = performance.now();
  const stream = await get("/stream?chunks=10&interval=200", host);
  const elapsed = performance.now() - started;
  expect(stream.status).toBe(200);
  expect(stream.backend).toBe("tt");
  const lines = stream.body.trim().split("\n");
  expect(lines.length).toBe(10);
  lines.forEach((line, i) => expect(line).toStartWith(`chunk ${i} at `));
  // The stream took well over the target timeout and still arrived whole.
  expect(elapsed).toBeGreaterThan(1500);
}, 15_000);

test("a deploy that waits longer than 10 s between progress lines still gets its answer, and the server stays up", async () => {
  // Bun closes idle connections after 10 s by default; a failing health check
  // prints nothing new while it keeps failing, so the admin socket must not time out.
  const port = await deadPort();
  const started = performance.now();
  const result = await proxy.cli(["deploy", "quiet", "--target", `127.0.0.1:${port}`, "--host", "quiet.test", "--deploy-timeout", "13s"]);
  expect(performance.now() - started).toBeGreaterThan(12_500);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`Error: target 127.0.0.1:${port} failed to become healthy within 13s`);
  expect(result.stderr).not.toContain("lost the connection");
  expect(proxy.exitCode).toBeNull();
  expect((await proxy.cli(["list"])).code).toBe(0);
}, 30_000);

test("a client that goes away while its deploy waits does not take the server down; the deploy still completes", async () => {
  const app = backend("left-behind");
  app.setHealth(500);
  const controller = new AbortController();
  const res = await fetch("http://parachute/deploy", {
    unix: proxy.socket,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ service: "left", targets: [app.address], hosts: ["left.test"], healthCheckInterval: "100ms" }),
    signal: controller.signal,
  } as RequestInit);
  expect(res.status).toBe(200);
  // Read the first progress line, then hang up while the deploy is still waiting.
  const reader = res.body!.getReader();
  await reader.read();
  controller.abort();
  app.setHealth(200);
  await waitFor("the deploy to complete without its client", async () => (await proxy.listJson()).some((s) => s.name === "left"));
  expect(proxy.exitCode).toBeNull();
  expect(await get("/echo", "left.test")).toMatchObject({ status: 200, backend: "left-behind" });
}, SLOW_TEST);
