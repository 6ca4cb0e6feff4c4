// The other ACME challenges (README "TLS"), against a real pebble whose
// HTTP-01 validations go to a port nothing listens on, so that only the
// challenge under test can pass:
// - TLS-ALPN-01 (`--tls-challenge tls-alpn-01`): pebble validates on the
//   proxy's real HTTPS port, with one process and with two workers; an
//   `acme-tls/1` hello without an open challenge is refused; by default
//   (`auto`) a failed HTTP-01 is followed by TLS-ALPN-01.
// - DNS-01 through `--tls-dns-hook`: a wildcard host, with the repo's example
//   hook examples/dns-hooks/challtestsrv.sh, which sets the TXT record in
//   pebble-challtestsrv (pebble's DNS) through its management API; the
//   record is removed afterwards; the CA is asked only once the record is
//   visible (or, after PARACHUTE_ACME_DNS_WAIT, anyway); a failing hook
//   fails the order with its stderr in the log and is retried; a plain host
//   works too; a restart serves the cached wildcard certificate with no new
//   order; bad input changes nothing.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Resolver } from "node:dns/promises";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import type { Backend } from "./support/backend.ts";
import { useBackends } from "./support/fixture.ts";
import type { Echo } from "./support/helpers.ts";
import { pebbleAvailable, startPebble, type Pebble } from "./support/pebble.ts";
import { freePort, Proxy, tempDir } from "./support/proxy.ts";
import { curlHttps, restart } from "./support/tls-tools.ts";

setDefaultTimeout(60_000);

/** Pebble issues in about a second; DNS-01 adds the hook and a look-up or two. */
const ISSUE_TIMEOUT_MS = 20_000;

const backend = useBackends();

interface Stack {
  pebble: Pebble;
  proxy: Proxy;
  httpsPort: number;
  rootFile: string;
  stop(): Promise<void>;
}

/**
 * pebble + a proxy on fixed ports. pebble's HTTP-01 port is one nothing
 * listens on; its TLS-ALPN-01 port is the proxy's HTTPS port when
 * `alpnOnProxy`, else another closed one.
 */
async function startStack(options: { alpnOnProxy: boolean; workers?: number; env?: (pebble: Pebble) => Record<string, string> }): Promise<Stack> {
  const [httpPort, httpsPort, closedHttp, closedTls] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const pebble = await startPebble(closedHttp, {}, { tlsPort: options.alpnOnProxy ? httpsPort : closedTls });
  const env = {
    PARACHUTE_ACME_DIRECTORY: pebble.directory,
    PARACHUTE_ACME_CA: pebble.apiCaFile,
    PARACHUTE_ACME_RETRY: "1s",
    PARACHUTE_ACME_DNS_RESOLVER: pebble.dnsServer,
    ...options.env?.(pebble),
  };
  const args = ["--http-port", String(httpPort), "--https-port", String(httpsPort), "--workers", String(options.workers ?? 1)];
  let proxy: Proxy;
  try {
    proxy = await Proxy.start({ args, env });
  } catch (error) {
    await pebble.stop();
    throw error;
  }
  const rootFile = path.join(pebble.dir, "issuing-root.pem");
  fs.writeFileSync(rootFile, await pebble.rootPem());
  return {
    pebble,
    proxy,
    httpsPort,
    rootFile,
    async stop() {
      await proxy.stop();
      await pebble.stop();
    },
  };
}

async function deploy(proxy: Proxy, service: string, args: string[]) {
  return proxy.cli(["deploy", service, "--health-check-interval", "100ms", ...args]);
}

async function deployOk(proxy: Proxy, service: string, args: string[]) {
  const result = await deploy(proxy, service, args);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}${result.stdout}`);
}

/** The lifecycle log lines (no request lines), for failure messages. */
function lifecycle(proxy: Proxy): string {
  return proxy.logs
    .filter((l) => l.msg !== "Request")
    .map((l) => JSON.stringify(l))
    .join("\n");
}

/** Waits for a log line `msg` matching `fields` (and `predicate`), with the proxy's logs in the error. */
function waitForLine(proxy: Proxy, msg: string, fields: Record<string, unknown>, predicate: (l: Record<string, unknown>) => boolean = () => true) {
  const matches = (l: Record<string, unknown>) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v) && predicate(l);
  return proxy.waitForLog(matches, ISSUE_TIMEOUT_MS).catch((error: Error) => {
    throw new Error(`${error.message}: waiting for "${msg}" ${JSON.stringify(fields)}; proxy logs:\n${lifecycle(proxy)}`);
  });
}

function waitForHostLog(proxy: Proxy, msg: string, host: string, predicate?: (l: Record<string, unknown>) => boolean) {
  return waitForLine(proxy, msg, { host }, predicate);
}

/** The certificate served for `servername` (verified against pebble's root) and the ALPN protocol agreed. */
function handshake(port: number, servername: string, ca: string, alpn: string[]): Promise<{ cert: X509Certificate; authorized: boolean; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca, rejectUnauthorized: false, ALPNProtocols: alpn }, () => {
      const peer = socket.getPeerCertificate();
      resolve({ cert: new X509Certificate(peer.raw), authorized: socket.authorized, alpn: socket.alpnProtocol ?? false });
      socket.end();
    });
    socket.setTimeout(15_000, () => socket.destroy(new Error("handshake timed out")));
    socket.on("error", reject);
  });
}

/** The challenges the proxy answered, by identifier (a wildcard's is its base domain). */
function challengesAnswered(proxy: Proxy): [unknown, unknown][] {
  return proxy.logs.filter((l) => l.msg === "Answering ACME challenge").map((l) => [l.host, l.challenge]);
}

for (const workers of [1, 2]) {
  describe.skipIf(!pebbleAvailable())(`TLS-ALPN-01 from pebble on the HTTPS port (--workers ${workers})`, () => {
    let s: Stack;
    let app: Backend;

    beforeAll(async () => {
      s = await startStack({ alpnOnProxy: true, workers });
      app = backend("alpn-app");
    });
    afterAll(async () => {
      await s?.stop();
    });

    test("a host whose HTTP port the CA cannot reach gets its certificate through acme-tls/1, and serves with it", async () => {
      const host = `alpn${workers}.test`;
      await deployOk(s.proxy, "web", ["--target", app.address, "--host", host, "--tls", "--tls-challenge", "tls-alpn-01"]);
      await waitForHostLog(s.proxy, "Certificate issued", host);
      expect(challengesAnswered(s.proxy)).toEqual([[host, "tls-alpn-01"]]);

      const res = await curlHttps(host, s.httpsPort, "/echo", s.rootFile);
      expect(res.exit).toBe(0);
      expect(res.status).toBe(200);
      expect((JSON.parse(res.body) as Echo).backend).toBe("alpn-app");
      const served = await handshake(s.httpsPort, host, fs.readFileSync(s.rootFile, "utf8"), ["http/1.1"]);
      expect(served.authorized).toBe(true);
      expect(served.cert.checkHost(host)).toBe(host);

      // With no challenge open, acme-tls/1 gets no certificate at all: not
      // the challenge one, and never the service's.
      const refused = await handshake(s.httpsPort, host, fs.readFileSync(s.rootFile, "utf8"), ["acme-tls/1"]).then(
        () => "handshake completed",
        (error: Error) => error.message,
      );
      expect(refused).toMatch(/unrecognized name|unrecognized_name|alert/i);
    });

    test("by default (auto) a failed HTTP-01 is followed by TLS-ALPN-01 in the same attempt", async () => {
      const host = `auto${workers}.test`;
      const from = s.proxy.logMark();
      await deployOk(s.proxy, "auto", ["--target", app.address, "--host", host, "--tls"]);
      await waitForHostLog(s.proxy, "Certificate issued", host);
      const answered = s.proxy.logs.slice(from).filter((l) => l.msg === "Answering ACME challenge").map((l) => [l.host, l.challenge]);
      expect(answered).toEqual([
        [host, "http-01"],
        [host, "tls-alpn-01"],
      ]);
      const fellBack = s.proxy.logs.slice(from).find((l) => l.msg === "ACME challenge failed; trying the next one");
      expect(fellBack).toMatchObject({ host, challenge: "http-01" });
      expect(s.proxy.logs.slice(from).filter((l) => l.msg === "Certificate request failed")).toEqual([]);
      const res = await curlHttps(host, s.httpsPort, "/echo", s.rootFile);
      expect(res.status).toBe(200);
    });

    test("--tls-challenge http-01 tries nothing else: the order fails with the CA's reason", async () => {
      const host = `http${workers}.test`;
      const from = s.proxy.logMark();
      await deployOk(s.proxy, "http-only", ["--target", app.address, "--host", host, "--tls", "--tls-challenge", "http-01"]);
      const failed = await waitForHostLog(s.proxy, "Certificate request failed", host);
      expect(String(failed.reason)).toContain("/.well-known/acme-challenge/");
      expect(s.proxy.logs.slice(from).filter((l) => l.msg === "Answering ACME challenge").map((l) => l.challenge)).toEqual(["http-01"]);
      expect((await s.proxy.cli(["remove", "http-only"])).code).toBe(0);
    });
  });
}

describe.skipIf(!pebbleAvailable())("wildcard certificates through DNS-01 and --tls-dns-hook", () => {
  let s: Stack;
  let app: Backend;
  let dir: string;
  let hook: string;
  /** The example hook from the repo, which finds challtestsrv through the proxy's environment. */
  const example = path.join(import.meta.dir, "..", "examples", "dns-hooks", "challtestsrv.sh");

  /** A hook that logs each call (`<action> <fqdn> <value>`, to `<name>.log`), then runs `body`. */
  function writeHook(name: string, body: string): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, `#!/bin/sh\necho "$1 $2 $3" >> '${file}.log'\n${body}`, { mode: 0o755 });
    return file;
  }

  function hookCalls(hook: string): string[] {
    return fs.existsSync(`${hook}.log`) ? fs.readFileSync(`${hook}.log`, "utf8").trim().split("\n") : [];
  }

  beforeAll(async () => {
    s = await startStack({ alpnOnProxy: false, env: (pebble) => ({ CHALLTESTSRV: pebble.challengeServerUrl, PARACHUTE_ACME_DNS_WAIT: "5s" }) });
    app = backend("wild-app");
    dir = tempDir("parachute-dns-hook-");
    hook = writeHook("challtestsrv-hook", `exec '${example}' "$@"\n`);
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("a wildcard host gets one certificate for every name under it; the TXT record is published, seen, then removed", async () => {
    await deployOk(s.proxy, "wild", ["--target", app.address, "--host", "*.wild.test", "--tls", "--tls-dns-hook", hook]);
    await waitForHostLog(s.proxy, "Certificate issued", "*.wild.test");
    expect(challengesAnswered(s.proxy)).toEqual([["wild.test", "dns-01"]]);

    const calls = hookCalls(hook);
    expect(calls).toHaveLength(2);
    const [add, remove] = calls.map((line) => line.split(" "));
    expect(add![0]).toBe("add");
    expect(add![1]).toBe("_acme-challenge.wild.test");
    // The record's value: a base64url SHA-256 digest (RFC 8555 §8.4).
    expect(add![2]).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(remove).toEqual(["remove", add![1]!, add![2]!]);
    const resolver = new Resolver();
    resolver.setServers([s.pebble.dnsServer]);
    const left = await resolver.resolveTxt("_acme-challenge.wild.test").catch(() => []);
    expect(left.flat()).not.toContain(add![2]);

    const ca = fs.readFileSync(s.rootFile, "utf8");
    for (const name of ["a.wild.test", "b.wild.test"]) {
      const res = await curlHttps(name, s.httpsPort, "/echo", s.rootFile);
      expect(res.exit).toBe(0);
      expect((JSON.parse(res.body) as Echo).backend).toBe("wild-app");
      const served = await handshake(s.httpsPort, name, ca, ["h2", "http/1.1"]);
      expect(served.authorized).toBe(true);
      expect(served.cert.subjectAltName).toBe("DNS:*.wild.test");
    }
  });

  test("DNS-01 serves a plain host too (a host the CA cannot reach at all)", async () => {
    await deployOk(s.proxy, "plain", ["--target", app.address, "--host", "plain.test", "--tls", "--tls-dns-hook", hook]);
    await waitForHostLog(s.proxy, "Certificate issued", "plain.test");
    expect(hookCalls(hook).filter((line) => line.includes("_acme-challenge.plain.test ")).map((line) => line.split(" ")[0])).toEqual(["add", "remove"]);
    const res = await curlHttps("plain.test", s.httpsPort, "/echo", s.rootFile);
    expect(res.status).toBe(200);
  });

  test("the CA is asked to validate only once the record is visible: a provider that publishes 2 s after the hook returns", async () => {
    // pebble validates at once (PEBBLE_VA_NOSLEEP): without the wait, this order's first attempt would fail.
    const slow = writeHook("slow-hook", `case "$1" in\n  add) (sleep 2; exec '${example}' "$@") >/dev/null 2>&1 & ;;\n  *) exec '${example}' "$@" ;;\nesac\n`);
    const from = s.proxy.logMark();
    await deployOk(s.proxy, "slow", ["--target", app.address, "--host", "*.slow.test", "--tls", "--tls-dns-hook", slow]);
    const answered = await waitForHostLog(s.proxy, "Answering ACME challenge", "slow.test");
    // A handshake for a name under the wildcard, while its order runs, waits for the wildcard's certificate.
    const early = handshake(s.httpsPort, "early.slow.test", fs.readFileSync(s.rootFile, "utf8"), ["http/1.1"]);
    const issued = await waitForHostLog(s.proxy, "Certificate issued", "*.slow.test");
    expect(Date.parse(issued.time as string) - Date.parse(answered.time as string)).toBeGreaterThanOrEqual(2_000);
    expect(s.proxy.logs.slice(from).filter((l) => l.msg === "Certificate request failed")).toEqual([]);
    const served = await early;
    expect(served.authorized).toBe(true);
    expect(served.cert.subjectAltName).toBe("DNS:*.slow.test");
  });

  test("a record that never shows up: after PARACHUTE_ACME_DNS_WAIT the CA is asked anyway, and its refusal fails the order", async () => {
    const silent = writeHook("silent-hook", "exit 0\n");
    await deployOk(s.proxy, "silent", ["--target", app.address, "--host", "*.silent.test", "--tls", "--tls-dns-hook", silent]);
    const warned = await waitForLine(s.proxy, "DNS-01 record not visible yet; asking the CA to validate anyway", { fqdn: "_acme-challenge.silent.test" });
    expect(warned.resolvers).toBe(s.pebble.dnsServer);
    expect(warned.waited_ms).toBeGreaterThanOrEqual(5_000);
    const failed = await waitForHostLog(s.proxy, "Certificate request failed", "*.silent.test");
    expect(String(failed.reason)).toMatch(/TXT/i);
    expect(failed.attempt).toBe(1);
    expect((await s.proxy.cli(["remove", "silent"])).code).toBe(0);
  });

  test("a failing hook fails the order with its stderr in the log, removes what it may have added, and is retried with backoff", async () => {
    const failing = writeHook("failing-hook", `echo "no API token for zone broken.test" >&2\nexit 3\n`);
    await deployOk(s.proxy, "broken", ["--target", app.address, "--host", "*.broken.test", "--tls", "--tls-dns-hook", failing]);
    const first = await waitForHostLog(s.proxy, "Certificate request failed", "*.broken.test", (l) => l.attempt === 1);
    expect(first.reason).toBe(`DNS hook ${failing} add _acme-challenge.broken.test failed (exit 3): no API token for zone broken.test`);
    await waitForHostLog(s.proxy, "Certificate request failed", "*.broken.test", (l) => l.attempt === 2);
    const actions = hookCalls(failing).map((line) => line.split(" ")[0]);
    expect(actions.slice(0, 4)).toEqual(["add", "remove", "add", "remove"]);
    // The other service's certificate is still served.
    const res = await curlHttps("c.wild.test", s.httpsPort, "/echo", s.rootFile);
    expect(res.status).toBe(200);
  });

  test("after a restart the wildcard certificate comes from the cache, with its service's challenge and hook restored: no order, no hook run", async () => {
    const ca = fs.readFileSync(s.rootFile, "utf8");
    const before = await handshake(s.httpsPort, "a.wild.test", ca, ["http/1.1"]);
    const calls = hookCalls(hook).length;
    await s.proxy.kill("SIGKILL");
    const from = s.proxy.logMark();
    await restart(s.proxy);
    const after = await handshake(s.httpsPort, "z.wild.test", ca, ["http/1.1"]);
    expect(after.cert.fingerprint256).toBe(before.cert.fingerprint256);
    expect(s.proxy.logs.slice(from).filter((l) => l.msg === "Requesting certificate" && l.host === "*.wild.test")).toEqual([]);
    expect(hookCalls(hook)).toHaveLength(calls);
    const wild = (await s.proxy.listJson()).find((service) => service.name === "wild");
    expect(wild?.hosts).toEqual(["*.wild.test"]);
    const saved = JSON.parse(fs.readFileSync(s.proxy.stateFile, "utf8")).services.find((service: { name: string }) => service.name === "wild");
    expect(saved.options).toMatchObject({ tlsChallenge: "dns-01", tlsDnsHook: hook });
  });

  test("bad input is refused naming it, and nothing changes", async () => {
    const before = await s.proxy.listJson();
    const cases: [string[], string][] = [
      [["--host", "*.other.test", "--tls"], "wildcard host *.other.test needs DNS-01 (--tls-dns-hook CMD)"],
      [["--host", "*.other.test", "--tls", "--tls-dns-hook", path.join(dir, "missing-hook")], `--tls-dns-hook ${path.join(dir, "missing-hook")}: no such file`],
      [["--host", "*.other.test", "--tls", "--tls-challenge", "tls-alpn-01"], "ACME tls-alpn-01 cannot issue wildcards"],
      [["--host", "other.test", "--tls", "--tls-challenge", "dns-1"], 'invalid TLS challenge "dns-1"'],
    ];
    for (const [args, message] of cases) {
      const result = await deploy(s.proxy, "other", ["--target", app.address, ...args]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(message);
    }
    // A hook path relative to the caller's directory is made absolute by the CLI, so the same check applies to it.
    const relative = await s.proxy.cli(["deploy", "other", "--target", app.address, "--host", "*.other.test", "--tls", "--tls-dns-hook", "no-such-hook"]);
    expect(relative.code).not.toBe(0);
    expect(relative.stderr).toContain(`${path.resolve("no-such-hook")}: no such file`);
    expect(await s.proxy.listJson()).toEqual(before);
  });
});
