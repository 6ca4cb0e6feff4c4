// Automatic certificates over ACME HTTP-01 (README "TLS"), against a real pebble
// that validates challenges on the proxy's real HTTP port: issuance for two
// hosts of one service and for a second service (verified against pebble's
// root by SNI, HTTP/2), redirects and ACME challenge paths, the certificate
// cache (0600 files, reused after a restart without new orders), renewal
// swapping certificates under load with no failed request, races between
// orders and deploys, a failing CA that leaves the HTTP side working, and
// switches between a staging and a production CA (two pebbles).
//
// Each describe has its own pebble and proxy, so that a failure in one
// (e.g. an order race) cannot turn the others' results into noise.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Backend } from "./support/backend.ts";
import { useBackends } from "./support/fixture.ts";
import type { Echo } from "./support/helpers.ts";
import { pebbleAvailable, startPebble, type Pebble } from "./support/pebble.ts";
import { freePort, Proxy, waitFor } from "./support/proxy.ts";
import { curl, curlHttps, httpsPortOf, peerCertificate, restart } from "./support/tls-tools.ts";

// Real processes and a real CA: more room than the 5 s default, still bounded.
setDefaultTimeout(40_000);

/** Pebble issues in well under a second; a host without its certificate after this is a failure. */
const ISSUE_TIMEOUT_MS = 10_000;

const backend = useBackends();

const fast = ["--health-check-interval", "100ms"];

async function deployOk(proxy: Proxy, service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...fast, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}${result.stdout}`);
  return result;
}

/** The lifecycle log lines (no request lines), for failure messages. */
function lifecycle(proxy: Proxy, from = 0): string {
  return proxy.logs
    .slice(from)
    .filter((l) => l.msg !== "Request")
    .map((l) => JSON.stringify(l))
    .join("\n");
}

/** Waits for a log line `msg` for `host`, logged at or after index `from` of proxy.logs. */
function waitForHostLog(proxy: Proxy, msg: string, host: string, from = 0, timeoutMs = ISSUE_TIMEOUT_MS) {
  return proxy.waitForLog((l) => l.msg === msg && l.host === host && proxy.logs.indexOf(l) >= from, timeoutMs).catch((error: Error) => {
    throw new Error(`${error.message}: waiting for "${msg}" for ${host}; proxy logs:\n${lifecycle(proxy)}`);
  });
}

/** Certificates pebble has issued so far (one log line each). */
function pebbleIssued(pebble: Pebble): number {
  return pebble.output().match(/Issued certificate serial/g)?.length ?? 0;
}

/** ACME accounts pebble has registered. */
function pebbleAccounts(pebble: Pebble): number {
  const counts = [...pebble.output().matchAll(/There are now (\d+) accounts/g)].map((m) => Number(m[1]));
  return Math.max(0, ...counts);
}

/** The folder of `<state-dir>/certs` that caches one ACME directory's certificates: its host, port and path. */
function directoryFolder(directoryUrl: string): string {
  const url = new URL(directoryUrl);
  return `${url.host}${url.pathname}`.replace(/[^a-z0-9.-]/gi, "_");
}

function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

interface AcmeStack {
  pebble: Pebble;
  proxy: Proxy;
  httpPort: number;
  httpsPort: number;
  env: Record<string, string>;
  rootPem: string;
  rootFile: string;
  https(host: string, pathAndQuery?: string): ReturnType<typeof curlHttps>;
  stop(): Promise<void>;
}

/**
 * pebble + a fresh proxy on fixed ports (the HTTP port must be known before
 * pebble starts: pebble validates HTTP-01 on it). `validatePort` sends
 * pebble's validations elsewhere instead, so that every order fails.
 */
async function startAcmeStack(options: { validatePort?: number } = {}): Promise<AcmeStack> {
  const httpPort = await freePort();
  const httpsPort = await freePort();
  const pebble = await startPebble(options.validatePort ?? httpPort);
  const env = { PARACHUTE_ACME_DIRECTORY: pebble.directory, PARACHUTE_ACME_CA: pebble.apiCaFile, PARACHUTE_ACME_RETRY: "1s" };
  let proxy: Proxy;
  try {
    proxy = await Proxy.start({ args: ["--http-port", String(httpPort), "--https-port", String(httpsPort)], env });
  } catch (error) {
    await pebble.stop();
    throw error;
  }
  expect(httpsPortOf(proxy.logs)).toBe(httpsPort);
  const rootPem = await pebble.rootPem();
  expect(rootPem).toContain("BEGIN CERTIFICATE");
  const rootFile = path.join(pebble.dir, "issuing-root.pem");
  fs.writeFileSync(rootFile, rootPem);
  const stack: AcmeStack = {
    pebble,
    proxy,
    httpPort,
    httpsPort,
    env,
    rootPem,
    rootFile,
    https: (host, pathAndQuery = "/echo") => curlHttps(host, httpsPort, pathAndQuery, rootFile),
    async stop() {
      await stack.proxy.stop();
      await pebble.stop();
    },
  };
  return stack;
}

describe.skipIf(!pebbleAvailable())("ACME certificates from pebble", () => {
  let s: AcmeStack;
  let one: Backend;
  let two: Backend;

  beforeAll(async () => {
    s = await startAcmeStack();
    one = backend("one");
    two = backend("two");
  });

  afterAll(async () => {
    await s?.stop();
  });

  test("issues certificates for two hosts of one service and for a second service, each served by SNI over HTTP/2", async () => {
    // One order at a time here (each deploy waits for its certificates); the
    // describes below race orders against each other on purpose.
    await deployOk(s.proxy, "two", ["--target", two.address, "--host", "b.test", "--tls"]);
    await waitForHostLog(s.proxy, "Certificate issued", "b.test");
    await deployOk(s.proxy, "one", ["--target", one.address, "--host", "a.test,www.a.test", "--tls"]);
    for (const host of ["a.test", "www.a.test", "b.test"]) {
      const requested = await waitForHostLog(s.proxy, "Requesting certificate", host);
      expect(requested.directory).toBe(s.pebble.directory);
      await waitForHostLog(s.proxy, "Certificate issued", host);
    }
    for (const [host, name] of [["a.test", "one"], ["www.a.test", "one"], ["b.test", "two"]] as const) {
      const res = await s.https(host);
      expect(res.stderr).toBe("");
      expect(res.exit).toBe(0); // verified against pebble's root for this name
      expect(res.status).toBe(200);
      expect(res.httpVersion).toBe("2");
      const echo = JSON.parse(res.body) as Echo;
      expect(echo.backend).toBe(name);
      expect(echo.headers["x-forwarded-proto"]).toBe("https");
      const peer = await peerCertificate(s.httpsPort, host, s.rootPem);
      expect(peer.authorized, `${host}: ${peer.authorizationError}`).toBe(true);
      expect(peer.alpn).toBe("h2");
    }
    // Each host has its own certificate, all from one ACME account, with no failed order.
    const serials = await Promise.all(["a.test", "www.a.test", "b.test"].map(async (h) => (await peerCertificate(s.httpsPort, h, s.rootPem)).serial));
    expect(new Set(serials).size).toBe(3);
    expect(pebbleAccounts(s.pebble)).toBe(1);
    expect(s.proxy.logs.filter((l) => l.msg === "Certificate request failed")).toEqual([]);
  });

  test("HTTP is redirected to HTTPS with 301, path and query kept, and the target works", async () => {
    const res = await s.proxy.fetch("/some/page?x=1&y=2", { host: "a.test" });
    expect(res.status).toBe(301);
    expect(res.headers.get("location")).toBe(`https://a.test:${s.httpsPort}/some/page?x=1&y=2`);
    const followed = await s.https("a.test", "/some/page?x=1&y=2");
    expect(followed.status).toBe(200);
    expect((JSON.parse(followed.body) as Echo).url).toEndWith("/some/page?x=1&y=2");
  });

  test("ACME challenge paths are never redirected, even for unknown tokens", async () => {
    // Pebble's validations of known tokens went through this redirecting
    // HTTP port above; a path with a token the proxy does not know must not
    // be redirected to HTTPS either.
    const challenge = await s.proxy.fetch("/.well-known/acme-challenge/not-a-known-token", { host: "a.test" });
    await challenge.body?.cancel();
    expect(challenge.headers.get("location")).toBeNull();
    expect(challenge.status).not.toBe(301);
  });

  test("an HTTP → HTTPS redirect for a host still being issued waits for its certificate", async () => {
    const early = backend("early");
    const mark = s.proxy.logs.length;
    await deployOk(s.proxy, "early", ["--target", early.address, "--host", "early.test", "--tls"]);
    const res = await s.proxy.fetch("/x?y=1", { host: "early.test" });
    const answeredAt = Date.now();
    expect(res.status).toBe(301);
    const location = res.headers.get("location");
    expect(location).toBe(`https://early.test:${s.httpsPort}/x?y=1`);
    // The certificate was there before the redirect was answered (the log
    // line may reach us after the response, so compare its time)…
    const issued = await waitForHostLog(s.proxy, "Certificate issued", "early.test", mark);
    expect(Date.parse(String(issued.time))).toBeLessThanOrEqual(answeredAt);
    // …so the browser following it gets a verified connection.
    const followed = await s.https("early.test", "/x?y=1");
    expect(followed.exit).toBe(0);
    expect(followed.status).toBe(200);
  });

  test("a first HTTPS request for a host whose certificate is not issued yet waits for it instead of failing", async () => {
    const first = backend("first");
    const mark = s.proxy.logs.length;
    await deployOk(s.proxy, "first", ["--target", first.address, "--host", "first.test", "--tls"]);
    try {
      // Straight after the deploy: the order is still running.
      const res = await s.https("first.test", "/echo?first=1");
      const issued = s.proxy.logs.slice(mark).find((l) => l.msg === "Certificate issued" && l.host === "first.test");
      expect(res.stderr, `issued at ${String(issued?.time)}`).toBe("");
      expect(res.exit).toBe(0);
      expect(res.status).toBe(200);
    } finally {
      // Whatever happened, later tests expect every host to have its certificate.
      await waitForHostLog(s.proxy, "Certificate issued", "first.test", mark);
    }
  });

  test("an HTTPS request for a host without TLS gets 503; a handshake for an unknown name is refused", async () => {
    const plain = backend("plain");
    await deployOk(s.proxy, "plain", ["--target", plain.address, "--host", "plain.test"]);
    const secure = await curl(`https://plain.test:${s.httpsPort}/echo`, { insecure: true, resolve: [{ host: "plain.test", port: s.httpsPort }] });
    expect(secure.exit).toBe(0);
    expect(secure.status).toBe(503);
    expect(plain.requests).toBe(0);
    // No ACME order for a service without --tls.
    expect(s.proxy.logs.some((l) => l.msg === "Requesting certificate" && l.host === "plain.test")).toBe(false);

    // A name no service has: the handshake itself is refused, and the server keeps serving.
    const unknown = await s.https("unknown.test");
    expect(unknown.exit).toBe(35); // CURLE_SSL_CONNECT_ERROR
    expect(String(await peerCertificate(s.httpsPort, "unknown.test", s.rootPem).catch((error: Error) => error))).toMatch(/unrecognized.name|alert|socket|ECONNRESET/i);
    // plain.test has a service, but not over TLS: the fallback certificate never verifies.
    const peer = await peerCertificate(s.httpsPort, "plain.test", s.rootPem);
    expect(peer.authorized).toBe(false);
    expect(peer.subjectCN).not.toMatch(/\.test$/);
    expect((await s.https("a.test")).status).toBe(200);
  });

  test("certificates and the ACME account are cached under <state-dir>/certs (certificates per directory), private files 0600", () => {
    const certs = path.join(s.proxy.stateDir, "certs");
    expect(mode(certs) & 0o077).toBe(0);
    const folder = path.join(certs, directoryFolder(s.pebble.directory));
    expect(mode(folder) & 0o077).toBe(0);
    for (const host of ["a.test", "www.a.test", "b.test"]) {
      expect(mode(path.join(folder, `${host}.key`))).toBe(0o600);
      expect(mode(path.join(folder, `${host}.crt`))).toBe(0o600);
      expect(fs.readFileSync(path.join(folder, `${host}.crt`), "utf8")).toContain("BEGIN CERTIFICATE");
      expect(fs.readFileSync(path.join(folder, `${host}.key`), "utf8")).toContain("PRIVATE KEY");
    }
    expect(mode(path.join(certs, "account.key"))).toBe(0o600);
    expect(mode(path.join(certs, "account.json"))).toBe(0o600);
    expect(fs.readFileSync(path.join(certs, "account.json"), "utf8")).toContain(s.pebble.directory);
    // No temp files left behind by the atomic writes.
    expect([...fs.readdirSync(certs), ...fs.readdirSync(folder)].filter((f) => f.includes(".tmp"))).toEqual([]);
  });

  test("a restart reuses the cached certificates: HTTPS works at once and nothing is ordered", async () => {
    const hosts = ["a.test", "www.a.test", "b.test", "early.test"];
    const before = await Promise.all(hosts.map(async (h) => (await peerCertificate(s.httpsPort, h, s.rootPem)).serial));
    const issuedBefore = pebbleIssued(s.pebble);
    const mark = s.proxy.logs.length;
    await s.proxy.kill("SIGKILL");
    await restart(s.proxy);
    // At once: no waiting for anything after `Server started`.
    for (const host of hosts) {
      const res = await s.https(host);
      expect(res.exit).toBe(0);
      expect(res.status).toBe(200);
    }
    const after = await Promise.all(hosts.map(async (h) => (await peerCertificate(s.httpsPort, h, s.rootPem)).serial));
    expect(after).toEqual(before);
    // A (wrong) background order would have been logged at restore, before `Server started`.
    const since = s.proxy.logs.slice(mark);
    expect(since.filter((l) => l.msg === "Requesting certificate" || l.msg === "Renewing certificate")).toEqual([]);
    expect(pebbleIssued(s.pebble)).toBe(issuedBefore);
  });

  test("renewal swaps the certificate while keep-alive and new-connection clients see no error", async () => {
    const before = await peerCertificate(s.httpsPort, "a.test", s.rootPem);
    const cachedBefore = new X509Certificate(fs.readFileSync(path.join(s.proxy.stateDir, "certs", directoryFolder(s.pebble.directory), "a.test.crt"))).serialNumber;
    await s.proxy.kill("SIGKILL");
    // Same state dir and ports. Pebble's certificates last 5 years, so
    // renewing 48000 h (2000 days) ahead makes every check (each second) renew.
    s.proxy = await Proxy.start({
      stateDir: s.proxy.stateDir,
      args: ["--http-port", String(s.httpPort), "--https-port", String(s.httpsPort)],
      env: { ...s.env, PARACHUTE_ACME_RENEW_BEFORE: "48000h", PARACHUTE_ACME_CHECK_INTERVAL: "1s" },
    });
    const proxy = s.proxy;

    // Bounded: the loops stop once a.test has been renewed twice (and the
    // swap after it has seen traffic), or after MAX requests in all.
    const MAX = 40_000;
    let stop = false;
    const errors: string[] = [];
    let ok = 0;
    const running = () => !stop && ok + errors.length < MAX;
    const record = (what: string, status: number, body: string, expected: string) => {
      if (status === 200 && body.includes(`"backend":"${expected}"`)) ok++;
      else errors.push(`${what}: ${status} ${body.slice(0, 120)}`);
    };
    // Bun fetch pools connections (keep-alive, HTTP/1.1)…
    const keepAlive = async () => {
      while (running()) {
        try {
          const res = await fetch(`https://127.0.0.1:${s.httpsPort}/echo`, { headers: { host: "a.test" }, tls: { ca: s.rootPem, serverName: "a.test" } });
          record("keep-alive", res.status, await res.text(), "one");
        } catch (error) {
          errors.push(`keep-alive: ${String(error)}`);
        }
      }
    };
    // …or opens a new connection per request…
    const fresh = async () => {
      while (running()) {
        try {
          const res = await fetch(`https://127.0.0.1:${s.httpsPort}/echo`, {
            headers: { host: "b.test", connection: "close" },
            keepalive: false,
            tls: { ca: s.rootPem, serverName: "b.test" },
          });
          record("new connection", res.status, await res.text(), "two");
        } catch (error) {
          errors.push(`new connection: ${String(error)}`);
        }
      }
    };
    // …and curl: a new connection with HTTP/2 and full verification each time.
    const curls = async () => {
      while (running()) {
        const res = await s.https("www.a.test");
        if (res.exit !== 0) errors.push(`curl: exit ${res.exit} ${res.stderr.trim()}`);
        else record("curl", res.status, res.body, "one");
      }
    };
    const mark = proxy.logs.length;
    const loops = [keepAlive(), keepAlive(), fresh(), curls()];
    try {
      // Two renewals of a.test completed while the load runs.
      await waitForHostLog(proxy, "Certificate renewed", "a.test", mark);
      await waitForHostLog(proxy, "Certificate renewed", "a.test", proxy.logs.length);
      // Keep the load on across the swap that follows the second renewal.
      const okAtSwap = ok;
      await waitFor("requests after the second renewal", () => ok >= okAtSwap + 30 || errors.length > 0, { timeoutMs: 10_000 });
    } finally {
      stop = true;
      await Promise.all(loops);
    }
    const since = proxy.logs.slice(mark);
    const swaps = since.filter((l) => l.msg === "HTTPS certificates loaded").length;
    expect(since.filter((l) => l.msg === "Certificate renewed" && l.host === "a.test").length).toBeGreaterThanOrEqual(2);
    expect(since.filter((l) => l.msg === "Renewing certificate" && l.host === "a.test").length).toBeGreaterThanOrEqual(1);
    expect(proxy.logs.filter((l) => l.msg === "Certificate request failed")).toEqual([]);
    // (Renewals go on each second; a handshake cut by a swap is what the
    // load loops count below, so this check of the serial retries.)
    let after: Awaited<ReturnType<typeof peerCertificate>> | undefined;
    for (let attempt = 0; !after && attempt < 3; attempt++) after = await peerCertificate(s.httpsPort, "a.test", s.rootPem).catch(() => undefined);
    expect(after?.authorized).toBe(true);
    expect(after?.serial).not.toBe(before.serial);
    // The renewed certificate is in the cache too.
    const cachedAfter = new X509Certificate(fs.readFileSync(path.join(proxy.stateDir, "certs", directoryFolder(s.pebble.directory), "a.test.crt"))).serialNumber;
    expect(cachedAfter).not.toBe(cachedBefore);
    // No request failed while the certificates were swapped.
    expect(ok).toBeGreaterThan(50);
    expect(errors, `${errors.length} failed and ${ok} good requests across ${swaps} certificate swaps`).toEqual([]);
  });
});

describe.skipIf(!pebbleAvailable())("ACME orders racing each other", () => {
  test("the first deploy with two TLS hosts on a fresh state dir registers one ACME account, and later orders succeed", async () => {
    const s = await startAcmeStack();
    try {
      const app = backend("fresh-two-hosts");
      await deployOk(s.proxy, "site", ["--target", app.address, "--host", "x.test,www.x.test", "--tls"]);
      await waitForHostLog(s.proxy, "Certificate issued", "x.test");
      await waitForHostLog(s.proxy, "Certificate issued", "www.x.test");
      // A later order (a new host) with the saved account succeeds at the first attempt…
      const later = backend("later");
      await deployOk(s.proxy, "later", ["--target", later.address, "--host", "later.test", "--tls"]);
      await waitForHostLog(s.proxy, "Certificate issued", "later.test");
      expect(s.proxy.logs.filter((l) => l.msg === "Certificate request failed")).toEqual([]);
      expect((await s.https("later.test")).status).toBe(200);
      // …because the proxy has exactly one account (key and URL saved together).
      expect(pebbleAccounts(s.pebble)).toBe(1);
    } finally {
      await s.stop();
    }
  });

  test("a saved account the CA no longer knows (a reset CA) is registered again, and the order succeeds", async () => {
    const s = await startAcmeStack();
    try {
      // As if pebble had been restarted since this account was created.
      const certs = path.join(s.proxy.stateDir, "certs");
      fs.mkdirSync(certs, { recursive: true, mode: 0o700 });
      const stale = s.pebble.directory.replace(/\/dir$/, "/my-account/deadbeef");
      fs.writeFileSync(path.join(certs, "account.json"), JSON.stringify({ urls: { [s.pebble.directory]: stale } }), { mode: 0o600 });
      const app = backend("reset-ca");
      await deployOk(s.proxy, "reset", ["--target", app.address, "--host", "reset.test", "--tls"]);
      await waitForHostLog(s.proxy, "Certificate issued", "reset.test");
      expect((await s.https("reset.test")).status).toBe(200);
      expect(fs.readFileSync(path.join(certs, "account.json"), "utf8")).not.toContain(stale);
    } finally {
      await s.stop();
    }
  });

  test("a deploy of another service while an order is in flight does not lose that order's certificate", async () => {
    const s = await startAcmeStack();
    try {
      // The account exists before the race (one order on its own first).
      const warm = backend("warm");
      await deployOk(s.proxy, "warm", ["--target", warm.address, "--host", "warm.test", "--tls"]);
      await waitForHostLog(s.proxy, "Certificate issued", "warm.test");

      // Service "four" is deploying, held by its target's health check, when
      // the order for c.test (service "three") starts; the target turns
      // healthy at that moment, so four's deploy completes during the order.
      const three = backend("three");
      const four = backend("four");
      four.setHealth(500);
      const mark = s.proxy.logs.length;
      const deployFour = deployOk(s.proxy, "four", ["--target", four.address, "--host", "d.test", "--tls", "--health-check-interval", "10ms"]);
      await s.proxy.waitForLog((l) => l.msg === "Deploying" && l.service === "four" && s.proxy.logs.indexOf(l) >= mark, 10_000);
      const deployThree = deployOk(s.proxy, "three", ["--target", three.address, "--host", "c.test", "--tls"]);
      await waitForHostLog(s.proxy, "Requesting certificate", "c.test", mark);
      four.setHealth(200);
      await Promise.all([deployThree, deployFour]);

      await waitForHostLog(s.proxy, "Certificate issued", "d.test", mark);
      await waitForHostLog(s.proxy, "Certificate issued", "c.test", mark);
      for (const [host, name] of [["c.test", "three"], ["d.test", "four"]] as const) {
        const res = await s.https(host);
        expect(res.exit).toBe(0);
        expect(res.status).toBe(200);
        expect((JSON.parse(res.body) as Echo).backend).toBe(name);
      }
    } finally {
      await s.stop();
    }
  });
});

describe.skipIf(!pebbleAvailable())("ACME failure", () => {
  let s: AcmeStack;

  beforeAll(async () => {
    // Pebble validates challenges on a port where nothing listens: every order fails.
    s = await startAcmeStack({ validatePort: await freePort() });
  });

  afterAll(async () => {
    await s?.stop();
  });

  test("a failed order logs the reason and retries with backoff; HTTP keeps serving", async () => {
    const app = backend("failing-ca-app");
    await deployOk(s.proxy, "site", ["--target", app.address, "--host", "f.test", "--tls", "--tls-redirect=false"]);

    const first = await waitForHostLog(s.proxy, "Certificate request failed", "f.test");
    expect(first.level).toBe("error");
    expect(typeof first.reason).toBe("string");
    expect(String(first.reason).length).toBeGreaterThan(0);
    expect(first.attempt).toBe(1);
    expect(first.retry_in).toBe("1s");
    // The retry comes after the backoff, and the next backoff is longer.
    const second = await s.proxy.waitForLog((l) => l.msg === "Certificate request failed" && l.host === "f.test" && l.attempt === 2, 15_000);
    expect(second.retry_in).toBe("2s");
    expect(Date.parse(String(second.time)) - Date.parse(String(first.time))).toBeGreaterThanOrEqual(900);

    // HTTP still serves the service.
    const res = await s.proxy.fetch("/echo?still=up", { host: "f.test" });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    expect(echo.backend).toBe("failing-ca-app");
    expect(echo.headers["x-forwarded-proto"]).toBe("http");
    // HTTPS for it has no certificate: verification fails cleanly.
    expect((await s.https("f.test")).exit).toBe(60);
    expect(s.proxy.logs.some((l) => l.msg === "Certificate issued")).toBe(false);
    expect(s.proxy.exitCode).toBeNull();
  });
});

/**
 * An HTTP relay in front of the proxy's HTTP port for one pebble's
 * validations: while held, a validation waits here, so that CA's order stays
 * in flight for as long as a test needs to look at what is served meanwhile.
 */
function validationRelay(httpPort: number) {
  let held = false;
  const waiting: (() => void)[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      if (held) await new Promise<void>((resolve) => waiting.push(resolve));
      const url = new URL(req.url);
      return fetch(`http://127.0.0.1:${httpPort}${url.pathname}${url.search}`, { headers: req.headers, redirect: "manual" });
    },
  });
  return {
    port: server.port!,
    waiting: () => waiting.length,
    hold() {
      held = true;
    },
    release() {
      held = false;
      for (const resume of waiting.splice(0)) resume();
    },
    stop: () => server.stop(true),
  };
}

describe.skipIf(!pebbleAvailable())("ACME staging and production directories", () => {
  // Two CAs: one plays Let's Encrypt production, the other its staging
  // directory (PARACHUTE_ACME_STAGING_DIRECTORY), each with its own root.
  let production: Pebble;
  let staging: Pebble;
  let relay: ReturnType<typeof validationRelay>;
  let proxy: Proxy;
  let httpsPort: number;
  const roots = { production: "", staging: "" };
  let bothRootsFile: string;
  let app: Backend;

  beforeAll(async () => {
    const httpPort = await freePort();
    httpsPort = await freePort();
    relay = validationRelay(httpPort);
    production = await startPebble(relay.port);
    staging = await startPebble(httpPort);
    const apiCas = path.join(production.dir, "both-api-cas.pem");
    fs.writeFileSync(apiCas, fs.readFileSync(production.apiCaFile, "utf8") + fs.readFileSync(staging.apiCaFile, "utf8"));
    roots.production = await production.rootPem();
    roots.staging = await staging.rootPem();
    bothRootsFile = path.join(production.dir, "both-roots.pem");
    fs.writeFileSync(bothRootsFile, roots.production + roots.staging);
    proxy = await Proxy.start({
      args: ["--http-port", String(httpPort), "--https-port", String(httpsPort)],
      env: {
        PARACHUTE_ACME_DIRECTORY: production.directory,
        PARACHUTE_ACME_STAGING_DIRECTORY: staging.directory,
        PARACHUTE_ACME_CA: apiCas,
        PARACHUTE_ACME_RETRY: "1s",
      },
    });
    app = backend("switch");
  });

  afterAll(async () => {
    relay?.release();
    await proxy?.stop();
    await relay?.stop();
    await production?.stop();
    await staging?.stop();
  });

  /** Which CA's root the certificate served for `host` verifies against. */
  async function servedFrom(host: string): Promise<string> {
    const [fromProduction, fromStaging] = await Promise.all([
      peerCertificate(httpsPort, host, roots.production),
      peerCertificate(httpsPort, host, roots.staging),
    ]);
    if (fromProduction.authorized) return "production";
    return fromStaging.authorized ? "staging" : `neither (${fromProduction.authorizationError})`;
  }

  /** HTTPS for `host` works, verified against either root. */
  async function httpsWorks(host: string) {
    const res = await curlHttps(host, httpsPort, "/echo", bothRootsFile);
    expect({ host, exit: res.exit, status: res.status, stderr: res.stderr }).toEqual({ host, exit: 0, status: 200, stderr: "" });
  }

  function ordersSince(host: string, mark: number) {
    return proxy.logs.slice(mark).filter((l) => (l.msg === "Requesting certificate" || l.msg === "Renewing certificate") && l.host === host);
  }

  test("switching a service from staging to production orders from production; the staging certificate serves until then", async () => {
    const host = "switch.test";
    let mark = proxy.logMark();
    await deployOk(proxy, "switch", ["--target", app.address, "--host", host, "--tls", "--tls-staging"]);
    await waitForHostLog(proxy, "Certificate issued", host, mark);
    expect(ordersSince(host, mark).map((l) => l.directory)).toEqual([staging.directory]);
    expect(await servedFrom(host)).toBe("staging");

    // Production validations are held, so its order stays in flight.
    relay.hold();
    mark = proxy.logMark();
    await deployOk(proxy, "switch", ["--target", app.address, "--host", host, "--tls"]);
    await waitFor("production's validation to reach the relay", () => relay.waiting() > 0, { timeoutMs: ISSUE_TIMEOUT_MS });
    expect(ordersSince(host, mark).map((l) => l.directory)).toEqual([production.directory]);
    // No gap: the staging certificate is still served while production issues.
    expect(await servedFrom(host)).toBe("staging");
    await httpsWorks(host);

    relay.release();
    await waitForHostLog(proxy, "Certificate issued", host, mark);
    expect(await servedFrom(host)).toBe("production");
    await httpsWorks(host);
  });

  test("switching back to staging serves the cached staging certificate at once, without an order", async () => {
    const host = "switch.test";
    const mark = proxy.logMark();
    const issued = pebbleIssued(staging) + pebbleIssued(production);
    await deployOk(proxy, "switch", ["--target", app.address, "--host", host, "--tls", "--tls-staging"]);
    expect(await servedFrom(host)).toBe("staging");
    expect(ordersSince(host, mark)).toEqual([]);
    expect(pebbleIssued(staging) + pebbleIssued(production)).toBe(issued);
  });

  test("a restart whose saved state switched to production orders from production, serving the staging certificate until then", async () => {
    const host = "restored.test";
    const restored = backend("restored");
    let mark = proxy.logMark();
    await deployOk(proxy, "restored", ["--target", restored.address, "--host", host, "--tls", "--tls-staging"]);
    await waitForHostLog(proxy, "Certificate issued", host, mark);
    expect(await servedFrom(host)).toBe("staging");

    // The server is down while its state is switched to production (as a
    // redeploy by an older version would have left it).
    await proxy.kill("SIGTERM");
    const state = JSON.parse(fs.readFileSync(proxy.stateFile, "utf8"));
    state.services.find((s: { name: string }) => s.name === "restored").options.tlsStaging = false;
    fs.writeFileSync(proxy.stateFile, JSON.stringify(state));
    relay.hold();
    mark = proxy.logMark();
    await restart(proxy);
    await waitFor("production's validation to reach the relay", () => relay.waiting() > 0, { timeoutMs: ISSUE_TIMEOUT_MS });
    expect(ordersSince(host, mark).map((l) => l.directory)).toEqual([production.directory]);
    expect(await servedFrom(host)).toBe("staging");
    await httpsWorks(host);
    // The other service's certificates came from the cache, each from its own directory.
    expect(await servedFrom("switch.test")).toBe("staging");
    expect(ordersSince("switch.test", mark)).toEqual([]);

    relay.release();
    await waitForHostLog(proxy, "Certificate issued", host, mark);
    expect(await servedFrom(host)).toBe("production");
  });

  test("certificates are cached per directory; one in the old flat layout is taken over without an order", async () => {
    const certs = path.join(proxy.stateDir, "certs");
    for (const [directory, host] of [[staging.directory, "switch.test"], [production.directory, "switch.test"], [production.directory, "restored.test"]] as const) {
      const folder = path.join(certs, directoryFolder(directory));
      expect(mode(folder) & 0o077).toBe(0);
      expect(mode(path.join(folder, `${host}.crt`))).toBe(0o600);
      expect(mode(path.join(folder, `${host}.key`))).toBe(0o600);
    }
    // As an older version kept it: <certs>/<host>.crt, no directory.
    const folder = path.join(certs, directoryFolder(production.directory));
    for (const ext of ["crt", "key"]) fs.renameSync(path.join(folder, `restored.test.${ext}`), path.join(certs, `restored.test.${ext}`));
    await proxy.kill("SIGKILL");
    const mark = proxy.logMark();
    await restart(proxy);
    expect(await servedFrom("restored.test")).toBe("production");
    expect(ordersSince("restored.test", mark)).toEqual([]);
    expect(fs.existsSync(path.join(folder, "restored.test.crt"))).toBe(true);
    expect(fs.existsSync(path.join(certs, "restored.test.crt"))).toBe(false);
  });
});
