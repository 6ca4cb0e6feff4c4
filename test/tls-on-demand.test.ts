// On-demand TLS (README "On-demand TLS"): deploy --tls --tls-on-demand-url,
// against a real pebble. A host gets a certificate at its first handshake once
// the URL answers 200 (an outside URL, or a path asked of the service's own
// targets); a refused, unreachable or silent URL fails the handshake with
// unrecognized_name and nothing reaches the CA; asks are rate-limited; a
// host with a certificate is not asked again, also after a restart; with
// --workers the workers ask the control plane.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as tls from "node:tls";
import { deadPort, startBackend, type Backend } from "./support/backend.ts";
import { pebbleAvailable, startPebble, type Pebble } from "./support/pebble.ts";
import { freePort, Proxy } from "./support/proxy.ts";
import { curlHttps, peerCertificate, restart } from "./support/tls-tools.ts";

setDefaultTimeout(40_000);

const ISSUE_TIMEOUT_MS = 10_000;
const fast = ["--health-check-interval", "100ms"];

/** The app's "may this host have a certificate?" endpoint: records every ask, allows the hosts in `allowed`. */
interface Allower {
  url(path: string): string;
  asks: { path: string; host: string | null; hostHeader: string | null }[];
  allowed: Set<string>;
  stop(): Promise<void>;
}

function startAllower(): Allower {
  const allower: Allower = {
    url: (p) => `http://127.0.0.1:${server.port}${p}`,
    asks: [],
    allowed: new Set(),
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 30,
    async fetch(req) {
      const url = new URL(req.url);
      const host = url.searchParams.get("host");
      allower.asks.push({ path: url.pathname, host, hostHeader: req.headers.get("host") });
      if (url.pathname === "/hang") await Bun.sleep(5_000);
      if (url.pathname === "/redirect") return new Response(null, { status: 302, headers: { location: "/check" } });
      if (url.pathname === "/long") return new Response("no ".repeat(100_000), { status: 403 });
      if (host && allower.allowed.has(host)) return new Response("ok");
      return new Response(`${host} is not a customer`, { status: 403 });
    },
  });
  return allower;
}

/** A handshake's outcome: the certificate's serial, or the error (an unrecognized_name alert for a refused name). */
function handshake(port: number, servername: string, ca: string): Promise<{ serial?: string; authorized?: boolean; error?: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca, rejectUnauthorized: false, ALPNProtocols: ["http/1.1"] }, () => {
      const serial = String(socket.getPeerCertificate().serialNumber ?? "");
      resolve({ serial, authorized: socket.authorized });
      socket.end();
    });
    socket.setTimeout(15_000, () => {
      socket.destroy();
      resolve({ error: "timed out" });
    });
    socket.on("error", (error) => resolve({ error: `${error.message} ${(error as { code?: string }).code ?? ""}` }));
  });
}

const UNRECOGNIZED_NAME = /unrecognized.name|alert number 112/i;

function issuedCount(pebble: Pebble): number {
  return pebble.output().match(/Issued certificate serial/g)?.length ?? 0;
}

interface Stack {
  pebble: Pebble;
  proxy: Proxy;
  httpsPort: number;
  rootPem: string;
  rootFile: string;
  stop(): Promise<void>;
}

async function startStack(args: string[] = [], env: Record<string, string> = {}): Promise<Stack> {
  const httpPort = await freePort();
  const httpsPort = await freePort();
  const pebble = await startPebble(httpPort);
  let proxy: Proxy;
  try {
    proxy = await Proxy.start({
      args: ["--http-port", String(httpPort), "--https-port", String(httpsPort), ...args],
      env: { PARACHUTE_ACME_DIRECTORY: pebble.directory, PARACHUTE_ACME_CA: pebble.apiCaFile, PARACHUTE_ACME_RETRY: "1s", ...env },
    });
  } catch (error) {
    await pebble.stop();
    throw error;
  }
  const rootPem = await pebble.rootPem();
  const rootFile = `${pebble.dir}/issuing-root.pem`;
  await Bun.write(rootFile, rootPem);
  return {
    pebble,
    proxy,
    httpsPort,
    rootPem,
    rootFile,
    async stop() {
      await proxy.stop();
      await pebble.stop();
    },
  };
}

async function deployOk(proxy: Proxy, service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...fast, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}${result.stdout}`);
}

/** Handshakes until `host` presents a certificate that verifies against pebble's root. */
async function verifiedSerial(s: Stack, host: string): Promise<string> {
  const deadline = Date.now() + ISSUE_TIMEOUT_MS;
  for (;;) {
    const result = await handshake(s.httpsPort, host, s.rootPem);
    if (result.authorized) return result.serial!;
    if (Date.now() > deadline) throw new Error(`${host} has no verified certificate: ${JSON.stringify(result)}`);
    await s.proxy.waitForLog((l) => l.msg === "Certificate issued" && l.host === host, ISSUE_TIMEOUT_MS);
  }
}

describe.skipIf(!pebbleAvailable())("on-demand TLS, one process", () => {
  let s: Stack;
  let allower: Allower;
  let app: Backend;

  beforeAll(async () => {
    allower = startAllower();
    app = startBackend("app");
    // 3 asks per second per service: enough for the tests below, small enough to see the limit.
    s = await startStack([], { PARACHUTE_TLS_ON_DEMAND_RATE: "3" });
    await deployOk(s.proxy, "shops", ["--target", app.address, "--host", "*.shops.test", "--tls", "--tls-on-demand-url", allower.url("/check")]);
    await deployOk(s.proxy, "apps", ["--target", app.address, "--host", "*.apps.test", "--tls", "--tls-on-demand-url", "/status/200"]);
    await deployOk(s.proxy, "scan", ["--target", app.address, "--host", "*.scan.test", "--tls", "--tls-on-demand-url", allower.url("/scan")]);
    await deployOk(s.proxy, "down", ["--target", app.address, "--host", "*.down.test", "--tls", "--tls-on-demand-url", `http://127.0.0.1:${await deadPort()}/check`]);
    await deployOk(s.proxy, "silent", ["--target", app.address, "--host", "*.silent.test", "--tls", "--tls-on-demand-url", allower.url("/hang")]);
    // Everything else: a catch-all whose app refuses every host.
    await deployOk(s.proxy, "rest", ["--target", app.address, "--tls", "--tls-on-demand-url", "/status/403"]);
  });

  afterAll(async () => {
    await s?.stop();
    await allower?.stop();
    await app?.stop();
  });

  test("an allowed host gets a real certificate at its first handshake; it is asked about once", async () => {
    allower.allowed.add("one.shops.test");
    expect(s.proxy.logs.some((l) => l.msg === "Requesting certificate")).toBe(false);
    // The first handshake waits for the order and gets the issued certificate.
    const first = await handshake(s.httpsPort, "one.shops.test", s.rootPem);
    expect(first.authorized).toBe(true);
    expect(allower.asks).toEqual([{ path: "/check", host: "one.shops.test", hostHeader: `127.0.0.1:${new URL(allower.url("/")).port}` }]);
    const res = await curlHttps("one.shops.test", s.httpsPort, "/echo", s.rootFile);
    expect(res.exit).toBe(0);
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("2");
    for (let i = 0; i < 3; i++) expect((await handshake(s.httpsPort, "one.shops.test", s.rootPem)).serial).toBe(first.serial);
    expect(allower.asks.length).toBe(1);
  });

  test("a refused host fails the handshake with unrecognized_name, is logged with the answer, and nothing is ordered", async () => {
    const issued = issuedCount(s.pebble);
    const mark = s.proxy.logs.length;
    const refused = await handshake(s.httpsPort, "stranger.shops.test", s.rootPem);
    expect(refused.error).toMatch(UNRECOGNIZED_NAME);
    const line = await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "stranger.shops.test");
    expect(line.reason).toContain("answered 403: stranger.shops.test is not a customer");
    expect(s.proxy.logs.slice(mark).some((l) => l.msg === "Requesting certificate")).toBe(false);
    expect(s.pebble.output()).not.toContain("stranger.shops.test");
    expect(issuedCount(s.pebble)).toBe(issued);
    // A retry within seconds is refused again without asking.
    const asks = allower.asks.length;
    expect((await handshake(s.httpsPort, "stranger.shops.test", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    expect(allower.asks.length).toBe(asks);
  });

  test("a relative URL is asked of the service's targets, with the host as Host header", async () => {
    const serial = await verifiedSerial(s, "blue.apps.test");
    expect(serial).not.toBe("");
    const asks = app.seen.filter((r) => r.url.includes("/status/200"));
    expect(asks.map((r) => [r.method, new URL(r.url).pathname + new URL(r.url).search, r.headers.host])).toEqual([["GET", "/status/200?host=blue.apps.test", "blue.apps.test"]]);
    // The catch-all's app says 403 for any name: refused, and no order.
    const mark = s.proxy.logs.length;
    expect((await handshake(s.httpsPort, "random.example", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    const line = await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "random.example");
    expect(line.reason).toContain("answered 403");
    expect(app.seen.some((r) => r.url.includes("/status/403?host=random.example"))).toBe(true);
    expect(s.proxy.logs.slice(mark).some((l) => l.msg === "Requesting certificate")).toBe(false);
  });

  test("a scan of random names asks at most the rate allows, and reaches the CA never", async () => {
    const issued = issuedCount(s.pebble);
    const before = allower.asks.filter((a) => a.path === "/scan").length;
    const names = Array.from({ length: 20 }, (_, i) => `n${i}-${Math.random().toString(36).slice(2, 8)}.scan.test`);
    const started = performance.now();
    const results = await Promise.all(names.map((name) => handshake(s.httpsPort, name, s.rootPem)));
    const seconds = (performance.now() - started) / 1000;
    for (const result of results) expect(result.error).toMatch(UNRECOGNIZED_NAME);
    const asked = allower.asks.filter((a) => a.path === "/scan").length - before;
    // A burst of 3, and 3 more per second the scan lasted.
    expect(asked).toBeGreaterThanOrEqual(3);
    expect(asked).toBeLessThanOrEqual(3 + Math.ceil(seconds * 3));
    expect(asked).toBeLessThan(names.length);
    expect(issuedCount(s.pebble)).toBe(issued);
    expect(s.proxy.logs.some((l) => l.msg === "Requesting certificate" && String(l.host).endsWith(".scan.test"))).toBe(false);
  });

  test("an unreachable URL, or one that does not answer within 2 s, refuses the host and logs why; the proxy goes on", async () => {
    expect((await handshake(s.httpsPort, "a.down.test", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    const down = await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "a.down.test");
    expect(String(down.reason)).toMatch(/^cannot ask http:\/\/127\.0\.0\.1:\d+\/check: /);
    const started = performance.now();
    expect((await handshake(s.httpsPort, "a.silent.test", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(1_900);
    expect(waited).toBeLessThan(4_000);
    const silent = await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "a.silent.test");
    expect(silent.reason).toContain("no answer within 2000 ms");
    expect(s.proxy.logs.some((l) => l.msg === "Requesting certificate" && /\.(down|silent)\.test$/.test(String(l.host)))).toBe(false);
    // Still serving.
    expect((await curlHttps("one.shops.test", s.httpsPort, "/echo", s.rootFile)).status).toBe(200);
  });

  test("a redirect is a refusal, not followed", async () => {
    await deployOk(s.proxy, "moved", ["--target", app.address, "--host", "*.moved.test", "--tls", "--tls-on-demand-url", allower.url("/redirect")]);
    allower.allowed.add("x.moved.test");
    expect((await handshake(s.httpsPort, "x.moved.test", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    const line = await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "x.moved.test");
    expect(line.reason).toContain("answered 302");
    expect(allower.asks.filter((a) => a.host === "x.moved.test").map((a) => a.path)).toEqual(["/redirect"]);
  });

  test("a refusal's body is logged up to 256 bytes", async () => {
    await deployOk(s.proxy, "long", ["--target", app.address, "--host", "*.long.test", "--tls", "--tls-on-demand-url", allower.url("/long")]);
    expect((await handshake(s.httpsPort, "x.long.test", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    const line = await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "x.long.test");
    expect(String(line.reason)).toBe(`${allower.url("/long")} answered 403: ${"no ".repeat(100_000).slice(0, 256)}`);
  });

  test("issued certificates persist: after a restart they are served at once, nobody is asked and nothing is ordered", async () => {
    const serials = { one: await verifiedSerial(s, "one.shops.test"), blue: await verifiedSerial(s, "blue.apps.test") };
    const asks = allower.asks.length;
    const appAsks = app.seen.length;
    const issued = issuedCount(s.pebble);
    const mark = s.proxy.logs.length;
    await s.proxy.kill("SIGKILL");
    await restart(s.proxy);
    expect((await handshake(s.httpsPort, "one.shops.test", s.rootPem)).serial).toBe(serials.one);
    expect((await handshake(s.httpsPort, "blue.apps.test", s.rootPem)).serial).toBe(serials.blue);
    expect(allower.asks.length).toBe(asks);
    expect(app.seen.length).toBe(appAsks);
    expect(issuedCount(s.pebble)).toBe(issued);
    expect(s.proxy.logs.slice(mark).some((l) => l.msg === "Requesting certificate")).toBe(false);
  });

  test("a removed on-demand service's hosts go with it; deployed again, its cached certificates are served without asking", async () => {
    const serial = await verifiedSerial(s, "blue.apps.test");
    expect((await s.proxy.cli(["remove", "apps"])).code).toBe(0);
    // Now the catch-all answers for the name, and its app refuses it.
    expect((await handshake(s.httpsPort, "blue.apps.test", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "blue.apps.test");
    const asks = app.seen.length;
    const issued = issuedCount(s.pebble);
    await deployOk(s.proxy, "apps", ["--target", app.address, "--host", "*.apps.test", "--tls", "--tls-on-demand-url", "/status/200"]);
    expect((await handshake(s.httpsPort, "blue.apps.test", s.rootPem)).serial).toBe(serial);
    expect(app.seen.length).toBe(asks);
    expect(issuedCount(s.pebble)).toBe(issued);
  });

  test("deploy refuses --tls-on-demand-url without --tls, with a custom certificate, or not a path or http(s) URL", async () => {
    const cases: [string[], RegExp][] = [
      [["--tls-on-demand-url", "/allow"], /--tls-on-demand-url needs --tls/],
      [["--tls", "--tls-on-demand-url", "ftp://example.com/allow"], /invalid --tls-on-demand-url "ftp:\/\/example.com\/allow"/],
      [["--tls", "--tls-on-demand-url", "//example.com/allow"], /invalid --tls-on-demand-url "\/\/example.com\/allow"/],
      [["--tls", "--tls-on-demand-url", "allow"], /invalid --tls-on-demand-url "allow"/],
    ];
    for (const [args, message] of cases) {
      const result = await s.proxy.cli(["deploy", "bad", "--target", app.address, "--host", "bad.test", ...args]);
      expect(result.code).not.toBe(0);
      expect(result.stderr + result.stdout).toMatch(message);
    }
    const listed = await s.proxy.cli(["list", "--json"]);
    expect(listed.stdout).not.toContain('"bad"');
  });
});

describe.skipIf(!pebbleAvailable())("on-demand TLS with --workers 2", () => {
  let s: Stack;
  let allower: Allower;
  let app: Backend;

  beforeAll(async () => {
    allower = startAllower();
    app = startBackend("app");
    s = await startStack(["--workers", "2"]);
    await deployOk(s.proxy, "shops", ["--target", app.address, "--tls", "--tls-on-demand-url", allower.url("/check")]);
  });

  afterAll(async () => {
    await s?.stop();
    await allower?.stop();
    await app?.stop();
  });

  test("a worker asks the control plane: an allowed host gets its certificate in every worker, a refused one unrecognized_name", async () => {
    allower.allowed.add("w.shops.test");
    const first = await handshake(s.httpsPort, "w.shops.test", s.rootPem);
    expect(first.authorized).toBe(true);
    // New connections land on either worker; each has the certificate, and nobody asks again.
    for (let i = 0; i < 6; i++) expect((await handshake(s.httpsPort, "w.shops.test", s.rootPem)).serial).toBe(first.serial);
    expect((await curlHttps("w.shops.test", s.httpsPort, "/echo", s.rootFile)).status).toBe(200);
    expect(allower.asks.filter((a) => a.host === "w.shops.test").length).toBe(1);
    // The control plane asked and ordered (the workers run no ACME).
    const ordered = s.proxy.logs.filter((l) => l.msg === "Requesting certificate" && l.host === "w.shops.test");
    expect(ordered.length).toBe(1);
    expect(ordered[0]!.worker).toBeUndefined();

    expect((await handshake(s.httpsPort, "nope.shops.test", s.rootPem)).error).toMatch(UNRECOGNIZED_NAME);
    await s.proxy.waitForLog((l) => l.msg === "On-demand certificate refused" && l.host === "nope.shops.test");
    expect(s.pebble.output()).not.toContain("nope.shops.test");
  });
});
