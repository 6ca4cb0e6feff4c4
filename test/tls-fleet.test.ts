// A fleet sharing one ACME cache (`run --tls-acme-cache-path`, README "TLS"):
// two real proxy processes on one shared directory and one real pebble. Pebble
// validates HTTP-01 on proxy A's HTTP port only, as a CA reaches whichever
// host the DNS name points at: an order by B succeeds only if A answers B's
// challenge from the shared directory. Checked: one order for a name deployed
// on both (the two wait for a lock another host holds, then one orders and
// the other loads its certificate), both serve the same certificate over real
// TLS handshakes, a crashed host's stale lock is taken over, a renewal by A is
// picked up by B at its periodic check, and a cache directory that cannot be created is a start-up error naming it.
// Run with A as one process and with workers: both answer from the directory.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { startBackend, type Backend } from "./support/backend.ts";
import { pebbleAvailable, startPebble, type Pebble } from "./support/pebble.ts";
import { freePort, Proxy, runCli, tempDir, waitFor } from "./support/proxy.ts";
import { peerCertificate } from "./support/tls-tools.ts";

setDefaultTimeout(60_000);

const ISSUE_TIMEOUT_MS = 15_000;

/** The folder of the cache that holds one ACME directory's certificates: its host, port and path. */
function directoryFolder(directoryUrl: string): string {
  const url = new URL(directoryUrl);
  return `${url.host}${url.pathname}`.replace(/[^a-z0-9.-]/gi, "_");
}

/** Certificates pebble has issued so far (one log line each). */
function pebbleIssued(pebble: Pebble): number {
  return pebble.output().match(/Issued certificate serial/g)?.length ?? 0;
}

function pebbleAccounts(pebble: Pebble): number {
  const counts = [...pebble.output().matchAll(/There are now (\d+) accounts/g)].map((m) => Number(m[1]));
  return Math.max(0, ...counts);
}

function lifecycle(proxy: Proxy): string {
  return proxy.logs
    .filter((l) => l.msg !== "Request")
    .map((l) => JSON.stringify(l))
    .join("\n");
}

function waitForHostLog(proxy: Proxy, msg: string, host: string, from = 0) {
  return proxy.waitForLog((l) => l.msg === msg && l.host === host && proxy.logs.indexOf(l) >= from, ISSUE_TIMEOUT_MS).catch((error: Error) => {
    throw new Error(`${error.message}: waiting for "${msg}" for ${host}; proxy logs:\n${lifecycle(proxy)}`);
  });
}

// A answers B's challenges: as one process (--workers 1, the control plane
// answers) and with workers (each reads the shared directory itself).
for (const aWorkers of [1, 2]) describe.skipIf(!pebbleAvailable())(`two proxies sharing one ACME cache directory (A with --workers ${aWorkers})`, () => {
  let pebble: Pebble;
  let a: Proxy;
  let b: Proxy;
  let app: Backend;
  let shared: string;
  let rootPem: string;
  const ports = { aHttp: 0, aHttps: 0, bHttp: 0, bHttps: 0 };
  let env: Record<string, string>;
  /** a.test's certificate after the first test, to tell a renewal from it. */
  let firstFingerprint = "";

  const certFile = (host: string) => path.join(shared, directoryFolder(pebble.directory), `${host}.crt`);
  const fingerprintOf = (pem: string) => new X509Certificate(pem).fingerprint256;

  beforeAll(async () => {
    [ports.aHttp, ports.aHttps, ports.bHttp, ports.bHttps] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    pebble = await startPebble(ports.aHttp);
    shared = path.join(tempDir("parachute-fleet-"), "shared-certs");
    env = { PARACHUTE_ACME_DIRECTORY: pebble.directory, PARACHUTE_ACME_CA: pebble.apiCaFile, PARACHUTE_ACME_RETRY: "1s" };
    // A by flag; B by the variable, with a check each second to pick up renewals.
    a = await Proxy.start({ args: ["--http-port", String(ports.aHttp), "--https-port", String(ports.aHttps), "--tls-acme-cache-path", shared, "--workers", String(aWorkers)], env });
    b = await Proxy.start({
      args: ["--http-port", String(ports.bHttp), "--https-port", String(ports.bHttps), "--workers", "2"],
      env: { ...env, TLS_ACME_CACHE_PATH: shared, PARACHUTE_ACME_CHECK_INTERVAL: "1s" },
    });
    expect(a.logs.find((l) => l.msg === "Server started")?.acme_cache).toBe(shared);
    expect(b.logs.find((l) => l.msg === "Server started")?.acme_cache).toBe(shared);
    expect(a.logs.find((l) => l.msg === "Server started")?.workers).toBe(aWorkers === 1 ? undefined : aWorkers);
    rootPem = await pebble.rootPem();
    app = startBackend("app");
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await app?.stop();
    await pebble?.stop();
  });

  async function deploy(proxy: Proxy, host: string, service = "app") {
    const result = await proxy.cli(["deploy", service, "--target", app.address, "--host", host, "--tls", "--health-check-interval", "100ms"]);
    if (result.code !== 0) throw new Error(`deploy failed (${result.code}):\n${result.stderr}${result.stdout}`);
  }

  test("one name deployed on both is ordered once, and both serve that one certificate", async () => {
    // Another host of the fleet is ordering a.test: both wait for its lock.
    const lock = path.join(shared, directoryFolder(pebble.directory), "a.test.lock");
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, JSON.stringify({ pid: 4242, host: "lb-elsewhere", since: new Date().toISOString(), token: "elsewhere" }));
    await Promise.all([deploy(a, "a.test"), deploy(b, "a.test")]);
    for (const proxy of [a, b]) {
      const waiting = await waitForHostLog(proxy, "Waiting for another host's certificate order", "a.test");
      expect(waiting).toMatchObject({ holder_host: "lb-elsewhere", holder_pid: 4242, lock });
    }
    expect(pebbleIssued(pebble)).toBe(0);
    // That host is done (and got nothing): one of the two orders, the other waits for it and loads its certificate.
    fs.rmSync(lock);
    await Promise.all([a, b].map((proxy) => proxy.waitForLog((l) => l.host === "a.test" && (l.msg === "Certificate issued" || l.msg === "Certificate loaded from the shared cache"), ISSUE_TIMEOUT_MS)));
    const outcomes = [a, b].map((proxy) => proxy.logs.filter((l) => l.host === "a.test" && (l.msg === "Certificate issued" || l.msg === "Certificate loaded from the shared cache")).map((l) => l.msg));
    expect(outcomes.flat().sort()).toEqual(["Certificate issued", "Certificate loaded from the shared cache"]);
    expect(pebbleIssued(pebble)).toBe(1);
    // One ACME account for the fleet: the account key is in the shared directory.
    expect(pebbleAccounts(pebble)).toBe(1);
    expect(fs.existsSync(path.join(shared, "account.key"))).toBe(true);
    const [onA, onB] = await Promise.all([peerCertificate(ports.aHttps, "a.test", rootPem), peerCertificate(ports.bHttps, "a.test", rootPem)]);
    expect(onA.authorized, String(onA.authorizationError)).toBe(true);
    expect(onB.authorized, String(onB.authorizationError)).toBe(true);
    expect(onA.fingerprint256).toBe(onB.fingerprint256);
    expect(onA.fingerprint256).toBe(fingerprintOf(fs.readFileSync(certFile("a.test"), "utf8")));
    expect(fs.existsSync(lock)).toBe(false);
    for (const proxy of [a, b]) expect(proxy.logs.filter((l) => l.msg === "Certificate request failed")).toEqual([]);
    firstFingerprint = onA.fingerprint256;
  });

  test("an order by B is validated at A, which answers B's challenge from the shared directory", async () => {
    const before = pebbleIssued(pebble);
    await deploy(b, "b.test", "other");
    await waitForHostLog(b, "Certificate issued", "b.test");
    expect(pebbleIssued(pebble)).toBe(before + 1);
    // Pebble's validation request reached A (its only HTTP-01 port), and A answered with B's key authorization.
    const answered = a.logs.find((l) => l.msg === "Request" && String(l.path ?? "").startsWith("/.well-known/acme-challenge/") && l.status === 200);
    expect(answered, lifecycle(a)).toBeDefined();
    expect(b.logs.some((l) => l.msg === "Request" && String(l.path ?? "").startsWith("/.well-known/acme-challenge/"))).toBe(false);
    const peer = await peerCertificate(ports.bHttps, "b.test", rootPem);
    expect(peer.authorized, String(peer.authorizationError)).toBe(true);
    // The challenge is gone from the shared directory once the order is over.
    await waitFor("the shared challenge to be removed", () => fs.readdirSync(path.join(shared, "challenges")).length === 0, { timeoutMs: 5_000 });
  });

  test("a lock left by a crashed host (not refreshed for 2 minutes) is taken over, and the name ordered", async () => {
    const lock = path.join(shared, directoryFolder(pebble.directory), "c.test.lock");
    fs.writeFileSync(lock, JSON.stringify({ pid: 4243, host: "lb-crashed", since: new Date(Date.now() - 600_000).toISOString(), token: "crashed" }));
    const then = new Date(Date.now() - 121_000);
    fs.utimesSync(lock, then, then);
    const before = pebbleIssued(pebble);
    await deploy(b, "c.test", "third");
    const takeover = await b.waitForLog((l) => l.msg === "Took over a stale certificate lock" && l.lock === lock, ISSUE_TIMEOUT_MS);
    expect(takeover).toMatchObject({ level: "warn", holder_host: "lb-crashed", holder_pid: 4243 });
    await waitForHostLog(b, "Certificate issued", "c.test");
    expect(b.logs.some((l) => l.msg === "Waiting for another host's certificate order" && l.host === "c.test")).toBe(false);
    expect(pebbleIssued(pebble)).toBe(before + 1);
    expect(fs.existsSync(lock)).toBe(false);
  });

  test("a renewal by A is picked up by B at its next check, without an order of its own", async () => {
    expect(firstFingerprint).not.toBe("");
    const issuedBefore = pebbleIssued(pebble);
    const bMark = b.logs.length;
    // A again, same state and cache, renewing 2000 days ahead (pebble's
    // certificates last 5 years): a.test, restored from the state, is due at
    // once. The check each hour keeps it to that one renewal.
    await a.stop();
    a = await Proxy.start({
      stateDir: a.stateDir,
      args: ["--http-port", String(ports.aHttp), "--https-port", String(ports.aHttps), "--tls-acme-cache-path", shared, "--workers", String(aWorkers)],
      env: { ...env, PARACHUTE_ACME_RENEW_BEFORE: "48000h", PARACHUTE_ACME_CHECK_INTERVAL: "1h" },
    });
    await waitForHostLog(a, "Certificate renewed", "a.test");
    const renewed = fingerprintOf(fs.readFileSync(certFile("a.test"), "utf8"));
    expect(renewed).not.toBe(firstFingerprint);
    await waitForHostLog(b, "Certificate reloaded from the shared cache", "a.test", bMark);
    await waitFor("B to serve the renewed certificate", async () => (await peerCertificate(ports.bHttps, "a.test", rootPem)).fingerprint256 === renewed, { timeoutMs: 5_000 });
    // The renewal was A's one order; B ordered nothing.
    expect(pebbleIssued(pebble)).toBe(issuedBefore + 1);
    expect(b.logs.slice(bMark).filter((l) => l.msg === "Renewing certificate" || l.msg === "Certificate renewed")).toEqual([]);
  });
});

test("a cache directory that cannot be created is exit 1 at start, naming it", async () => {
  const dir = tempDir();
  const blocker = path.join(dir, "a-file");
  fs.writeFileSync(blocker, "");
  const cache = path.join(blocker, "certs");
  const result = await runCli(
    ["run", "--http-port", "0", "--https-port", "0", "--bind", "127.0.0.1", "--state-dir", path.join(dir, "state"), "--socket", path.join(dir, "admin.sock"), "--tls-acme-cache-path", cache],
    {},
    { timeoutMs: 10_000 },
  );
  expect(result.code).toBe(1);
  expect(result.stderr).toStartWith(`Error: cannot create ACME cache directory ${cache}`);
  expect(result.stdout).not.toContain("Server started");
});

test("an empty --tls-acme-cache-path is an error naming it", async () => {
  const dir = tempDir();
  const result = await runCli(["run", "--state-dir", path.join(dir, "state"), "--socket", path.join(dir, "admin.sock"), "--tls-acme-cache-path", ""], {}, { timeoutMs: 10_000 });
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("invalid value for --tls-acme-cache-path: empty directory");
});
