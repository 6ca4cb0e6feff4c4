// TLS with the operator's own certificates (README "TLS" and its redirects,
// §8 TLS): certificates made with openssl under a throwaway CA are served by
// SNI over HTTP/2 and verified against that CA; streamed downloads keep their
// Content-Length over HTTP/1.1; bad certificates (expired,
// mismatched key, missing file, not covering the host) fail the deploy with
// nothing changed; wildcard hosts need a certificate; HTTP → HTTPS and
// canonical-host redirects (301, one hop, query kept); 503 over HTTPS for a
// service without TLS; unknown SNI fails verification cleanly.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as fs from "node:fs";
import * as http2 from "node:http2";
import * as path from "node:path";
import { startBackend, type Backend } from "./support/backend.ts";
import { startRawBigBackend } from "./support/stream-backend.ts";
import type { Echo } from "./support/helpers.ts";
import { rawRequest } from "./support/net.ts";
import { freePort, Proxy, tempDir, waitFor, type ListedService } from "./support/proxy.ts";
import { createTestCa, curl, curlHttps, httpsPortOf, peerCertificate, restart, type TestCa } from "./support/tls-tools.ts";

const opensslAvailable = Boolean(Bun.which("openssl") && Bun.which("curl"));

// Real processes and a real CA: more room than the 5 s default, still bounded.
setDefaultTimeout(40_000);

let proxy: Proxy;
let ca: TestCa;
let httpsPort = 0;
const backends: Backend[] = [];
let app: Backend;
let certs: Record<"good" | "good2" | "other" | "expired" | "wild", { cert: string; key: string }>;
let strayKey: string;

const fast = ["--health-check-interval", "100ms"];

function backend(name: string): Backend {
  const b = startBackend(name);
  backends.push(b);
  return b;
}

function withCert(which: { cert: string; key: string }): string[] {
  return ["--tls", "--tls-certificate-path", which.cert, "--tls-private-key-path", which.key];
}

async function deployOk(service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...fast, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}${result.stdout}`);
  return result;
}

function https(host: string, pathAndQuery = "/echo", extra: Parameters<typeof curlHttps>[4] = {}) {
  return curlHttps(host, httpsPort, pathAndQuery, ca.certFile, extra);
}

async function serialOf(host: string): Promise<string> {
  const peer = await peerCertificate(httpsPort, host, ca.pem);
  expect(peer.authorized, `${host}: ${peer.authorizationError}`).toBe(true);
  return peer.serial;
}

function stateBytes(): string {
  return fs.existsSync(proxy.stateFile) ? fs.readFileSync(proxy.stateFile, "utf8") : "";
}

describe.skipIf(!opensslAvailable)("custom certificates", () => {
  beforeAll(async () => {
    ca = await createTestCa(path.join(tempDir("parachute-tls-ca-"), "ca"));
    certs = {
      good: await ca.issue("good", ["c.test", "www.c.test"]),
      good2: await ca.issue("good2", ["c.test", "www.c.test"]),
      other: await ca.issue("other", ["other.test"]),
      expired: await ca.issue("expired", ["c.test", "www.c.test"], { start: "20200101000000Z", end: "20200201000000Z" }),
      wild: await ca.issue("wild", ["*.w.test"]),
    };
    strayKey = await ca.strayKey("stray");
    app = backend("app");
    // Fixed ports, so that a restart comes back on the same ones.
    const [httpPort, wantedHttps] = [await freePort(), await freePort()];
    proxy = await Proxy.start({ args: ["--http-port", String(httpPort), "--https-port", String(wantedHttps)] });
    httpsPort = httpsPortOf(proxy.logs);
    expect(httpsPort).toBe(wantedHttps);
  });

  afterAll(async () => {
    await proxy?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  });

  test("a custom certificate is served by SNI for every host, verified against its CA, over HTTP/2", async () => {
    await deployOk("custom", ["--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good)]);
    for (const host of ["c.test", "www.c.test"]) {
      const res = await https(host);
      expect(res.stderr).toBe("");
      expect(res.exit).toBe(0);
      expect(res.status).toBe(200);
      expect(res.httpVersion).toBe("2");
      const echo = JSON.parse(res.body) as Echo;
      expect(echo.backend).toBe("app");
      expect(echo.headers["x-forwarded-proto"]).toBe("https");
      expect(echo.headers.host).toBe(`${host}:${httpsPort}`);
      const peer = await peerCertificate(httpsPort, host, ca.pem);
      expect(peer.authorized).toBe(true);
      expect(peer.subjectCN).toBe("c.test");
      expect(peer.alpn).toBe("h2");
    }
    // HTTP/1.1 clients work as well.
    const h1 = await https("c.test", "/echo", { http1: true });
    expect([h1.status, h1.httpVersion]).toEqual([200, "1.1"]);
    // The request log names the version each client spoke.
    const logged = async (path: string) => (await proxy.waitForLog((l) => l.msg === "Request" && l.path === path && l.scheme === "https")).proto;
    await https("c.test", "/h2-logged");
    expect(await logged("/h2-logged")).toBe("HTTP/2.0");
    await https("c.test", "/h1-logged", { http1: true });
    expect(await logged("/h1-logged")).toBe("HTTP/1.1");
  });

  test("an HTTP/2 connection survives a TLS deploy that changes no certificate (no GOAWAY)", async () => {
    const session = http2.connect(`https://127.0.0.1:${httpsPort}`, { ca: ca.pem, servername: "c.test" });
    let goaway = false;
    session.on("goaway", () => (goaway = true));
    session.on("error", () => {});
    const get = (p: string) =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":path": p, ":authority": `c.test:${httpsPort}` });
        let status = 0;
        stream.on("response", (headers) => (status = Number(headers[":status"])));
        stream.on("data", () => {});
        stream.on("end", () => resolve(status));
        stream.on("error", reject);
      });
    try {
      expect(await get("/echo")).toBe(200);
      await deployOk("custom", ["--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good)]);
      // A replaced HTTP/2 server would say GOAWAY once its 2 s grace is over.
      await Bun.sleep(3000);
      expect(goaway).toBe(false);
      expect(await get("/echo")).toBe(200);
    } finally {
      session.close();
    }
  });

  test("a client sending an IP address as its SNI name (wrk does) gets the fallback certificate, not a refused handshake", async () => {
    const proc = Bun.spawn(["openssl", "s_client", "-connect", `127.0.0.1:${httpsPort}`, "-servername", "127.0.0.1", "-brief"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, exit] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(`${out}${err}`).not.toContain("unrecognized name");
    expect(`${out}${err}`).toContain("CONNECTION ESTABLISHED");
    expect(exit).toBe(0);
  });

  test("a streamed download keeps the app's Content-Length over HTTPS with HTTP/1.1, and arrives whole over HTTP/2", async () => {
    const big = startRawBigBackend();
    try {
      await deployOk("downloads", ["--target", big.address, "--host", "c.test", "--path-prefix", "/big", "--strip-path-prefix=false", ...withCert(certs.good)]);
      const n = 3 * 1024 * 1024 + 7;
      for (const http1 of [false, true]) {
        const res = await https("c.test", `/big?n=${n}`, { http1 });
        // curl exits 18 when the body ends before Content-Length.
        expect([res.exit, res.status, res.httpVersion]).toEqual([0, 200, http1 ? "1.1" : "2"]);
        expect(Buffer.byteLength(res.body, "latin1")).toBeGreaterThan(0);
        // HTTP/2 is served by Bun.serve, which drops it (README, "Choices").
        if (http1) {
          expect(res.headers["content-length"]).toBe(String(n));
          expect(res.headers["transfer-encoding"]).toBeUndefined();
        }
      }
      expect((await proxy.cli(["remove", "downloads"])).code).toBe(0);
    } finally {
      big.stop();
    }
  });

  test("HTTP is redirected to HTTPS with 301, keeping path and query and naming the HTTPS port", async () => {
    const res = await proxy.fetch("/some/path?x=1&y=two%20words", { host: "c.test" });
    expect(res.status).toBe(301);
    expect(res.headers.get("location")).toBe(`https://c.test:${httpsPort}/some/path?x=1&y=two%20words`);
    // A Host header with the HTTP port: the redirect names the HTTPS port instead.
    const withPort = await proxy.fetch("/p?q=1", { host: `www.c.test:${proxy.httpPort}` });
    expect(withPort.status).toBe(301);
    expect(withPort.headers.get("location")).toBe(`https://www.c.test:${httpsPort}/p?q=1`);
    expect(app.seen.some((s) => s.url.includes("/some/path"))).toBe(false);
  });

  test("a WebSocket handshake over plain HTTP to a TLS service gets the same 301 to https, never a plaintext upgrade", async () => {
    const res = await rawRequest(
      proxy.httpPort,
      "GET /live?room=1 HTTP/1.1\r\nHost: c.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    expect(res.status).toBe(301);
    expect(res.headers.find(([name]) => name === "location")?.[1]).toBe(`https://c.test:${httpsPort}/live?room=1`);
    expect(app.seen.some((s) => s.url.includes("/live"))).toBe(false);
  });

  test("--tls-redirect=false serves the service over both HTTP and HTTPS", async () => {
    await deployOk("custom", ["--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good), "--tls-redirect=false"]);
    const res = await proxy.fetch("/echo?plain=1", { host: "c.test" });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    expect(echo.headers["x-forwarded-proto"]).toBe("http");
    expect(echo.url).toEndWith("/echo?plain=1");
    const secure = await https("c.test", "/echo?secure=1");
    expect(secure.status).toBe(200);
    expect((JSON.parse(secure.body) as Echo).headers["x-forwarded-proto"]).toBe("https");
  });

  test("--canonical-host redirects other hosts to it, combined with the TLS redirect in a single 301", async () => {
    await deployOk("custom", ["--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good), "--canonical-host", "c.test"]);
    // HTTP, other host: one hop straight to https://canonical, query kept.
    const both = await proxy.fetch("/a/b?q=1&r=2", { host: "www.c.test" });
    expect(both.status).toBe(301);
    expect(both.headers.get("location")).toBe(`https://c.test:${httpsPort}/a/b?q=1&r=2`);
    // HTTP, canonical host: only the TLS redirect.
    const tlsOnly = await proxy.fetch("/a?q=1", { host: "c.test" });
    expect(tlsOnly.status).toBe(301);
    expect(tlsOnly.headers.get("location")).toBe(`https://c.test:${httpsPort}/a?q=1`);
    // HTTPS, other host: only the canonical redirect, to the same HTTPS port.
    const canonicalOnly = await https("www.c.test", "/a?q=1");
    expect(canonicalOnly.exit).toBe(0);
    expect(canonicalOnly.status).toBe(301);
    expect(canonicalOnly.headers.location).toBe(`https://c.test:${httpsPort}/a?q=1`);
    // HTTPS, canonical host: served.
    const served = await https("c.test", "/echo?canonical=1");
    expect(served.status).toBe(200);
    expect((JSON.parse(served.body) as Echo).url).toEndWith("/echo?canonical=1");
  });

  test("--canonical-host with --tls-redirect=false keeps the scheme and port", async () => {
    await deployOk("custom", [
      "--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good), "--canonical-host", "c.test", "--tls-redirect=false",
    ]);
    const res = await proxy.fetch("/x?y=1", { host: `www.c.test:${proxy.httpPort}` });
    expect(res.status).toBe(301);
    expect(res.headers.get("location")).toBe(`http://c.test:${proxy.httpPort}/x?y=1`);
    const direct = await proxy.fetch("/echo", { host: "c.test" });
    expect(direct.status).toBe(200);
    await direct.body?.cancel();
    // Back to the plain TLS setup for the following tests.
    await deployOk("custom", ["--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good)]);
  });

  test("redeploying with a new certificate swaps it without a restart", async () => {
    const before = await serialOf("c.test");
    await deployOk("custom", ["--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good2)]);
    const after = await serialOf("c.test");
    expect(after).not.toBe(before);
    expect(await serialOf("www.c.test")).toBe(after);
    const res = await https("c.test");
    expect(res.status).toBe(200);
    // And back to the first certificate, which the bad-certificate tests expect to stay.
    await deployOk("custom", ["--target", app.address, "--host", "c.test,www.c.test", ...withCert(certs.good)]);
    expect(await serialOf("c.test")).toBe(before);
  });

  describe("a bad certificate fails the deploy and changes nothing", () => {
    const cases: { name: string; files: () => { cert: string; key: string }; message: RegExp }[] = [
      { name: "expired", files: () => certs.expired, message: /expired/i },
      { name: "key does not match", files: () => ({ cert: certs.good.cert, key: strayKey }), message: /match/i },
      { name: "missing certificate file", files: () => ({ cert: path.join(ca.dir, "missing.pem"), key: certs.good.key }), message: /missing\.pem/ },
      { name: "missing key file", files: () => ({ cert: certs.good.cert, key: path.join(ca.dir, "missing.key") }), message: /missing\.key/ },
      { name: "not covering the host", files: () => certs.other, message: /c\.test/ },
      { name: "not a certificate", files: () => ({ cert: certs.good.key, key: certs.good.key }), message: /certificate|PEM/i },
    ];

    let listBefore: ListedService[] | undefined;

    for (const c of cases) {
      test(c.name, async () => {
        const servedBefore = await serialOf("c.test");
        // Every case starts from the same state (nothing ever changes).
        listBefore ??= await proxy.listJson();
        const stateBefore = stateBytes();
        const candidate = startBackend(`candidate-${c.name}`);
        backends.push(candidate);

        // Redeploying the existing service with new targets and the bad certificate…
        const redeploy = await proxy.cli(["deploy", "custom", ...fast, "--target", candidate.address, "--host", "c.test,www.c.test", ...withCert(c.files())]);
        expect(redeploy.code).toBe(1);
        expect(redeploy.stderr).toStartWith("Error: ");
        expect(redeploy.stderr).toMatch(c.message);
        // …is rejected during validation: the new target was never even health-checked.
        expect(candidate.healthChecks).toBe(0);

        // A brand-new service with it is not created.
        const fresh = await proxy.cli(["deploy", "fresh", ...fast, "--target", candidate.address, "--host", "fresh.test", ...withCert(c.files())]);
        expect(fresh.code).toBe(1);
        expect(fresh.stderr).toStartWith("Error: ");

        expect(await proxy.listJson()).toEqual(listBefore);
        expect(stateBytes()).toBe(stateBefore);
        expect(await serialOf("c.test")).toBe(servedBefore);
        const res = await https("c.test");
        expect(res.status).toBe(200);
        expect((JSON.parse(res.body) as Echo).backend).toBe("app");
        expect(candidate.requests).toBe(0);
      });
    }

    test("a certificate path without a key path (and the reverse) is refused", async () => {
      listBefore ??= await proxy.listJson();
      const noKey = await proxy.cli(["deploy", "custom", ...fast, "--target", app.address, "--host", "c.test", "--tls", "--tls-certificate-path", certs.good.cert]);
      expect(noKey.code).toBe(1);
      expect(noKey.stderr).toContain("--tls-private-key-path");
      const noCert = await proxy.cli(["deploy", "custom", ...fast, "--target", app.address, "--host", "c.test", "--tls", "--tls-private-key-path", certs.good.key]);
      expect(noCert.code).toBe(1);
      expect(noCert.stderr).toContain("--tls-certificate-path");
      expect(await proxy.listJson()).toEqual(listBefore);
    });
  });

  test("--tls with a wildcard host and no certificate is a clear error; with a wildcard certificate it is served", async () => {
    const wild = backend("wild");
    const refused = await proxy.cli(["deploy", "wild", ...fast, "--target", wild.address, "--host", "*.w.test", "--tls"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toStartWith("Error: ");
    expect(refused.stderr).toMatch(/wildcard/i);
    expect(refused.stderr).toContain("*.w.test");
    expect((await proxy.listJson()).map((s) => s.name)).not.toContain("wild");
    expect(wild.healthChecks).toBe(0);

    await deployOk("wild", ["--target", wild.address, "--host", "*.w.test", ...withCert(certs.wild)]);
    const res = await https("x.w.test");
    expect(res.exit).toBe(0);
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as Echo).backend).toBe("wild");
    // Two labels deep is not covered by *.w.test: no service and no certificate.
    const deep = await https("a.b.w.test");
    expect(deep.exit).not.toBe(0);
  });

  test("an HTTPS request for a host whose service has no TLS gets 503; HTTP still serves it", async () => {
    const plain = backend("plain");
    await deployOk("plain", ["--target", plain.address, "--host", "p.test"]);
    const secure = await curl(`https://p.test:${httpsPort}/echo`, { insecure: true, resolve: [{ host: "p.test", port: httpsPort }] });
    expect(secure.exit).toBe(0);
    expect(secure.status).toBe(503);
    expect(plain.requests).toBe(0);
    const res = await proxy.fetch("/echo", { host: "p.test" });
    expect(res.status).toBe(200);
    expect(((await res.json()) as Echo).headers["x-forwarded-proto"]).toBe("http");
  });

  test("a TLS handshake for a name no service has is refused (unrecognized_name); a host without TLS never sees a site's certificate", async () => {
    const unknown = await https("unknown.test");
    expect(unknown.exit).toBe(35); // CURLE_SSL_CONNECT_ERROR: the handshake itself failed
    expect(unknown.status).toBe(0);
    expect(String(await peerCertificate(httpsPort, "unknown.test", ca.pem).catch((error: Error) => error))).toMatch(/unrecognized.name|alert|socket|ECONNRESET/i);
    // p.test has a plain HTTP service: the fallback certificate, which fails verification.
    const plain = await https("p.test");
    expect(plain.exit).toBe(60); // CURLE_PEER_FAILED_VERIFICATION
    const peer = await peerCertificate(httpsPort, "p.test", ca.pem);
    expect(peer.authorized).toBe(false);
    expect(peer.subjectCN).not.toBe("c.test");
    expect(peer.subjectCN).not.toBe("*.w.test");
    // The server is unharmed.
    expect((await https("c.test")).status).toBe(200);
  });

  test("after a restart the custom certificates are served at once", async () => {
    const before = await serialOf("c.test");
    const mark = proxy.logs.length;
    await proxy.kill("SIGKILL");
    await restart(proxy);
    expect(httpsPortOf(proxy.logs.slice(mark))).toBe(httpsPort);
    const res = await https("c.test");
    expect(res.exit).toBe(0);
    expect(res.status).toBe(200);
    expect(await serialOf("c.test")).toBe(before);
    expect((await https("x.w.test")).status).toBe(200);
  });

  test("SIGTERM lets an in-flight HTTPS request finish before the server exits 0", async () => {
    const slow = https("c.test", "/slow?ms=1500");
    await waitFor("the slow request to reach the app", () => app.inflight > 0, { timeoutMs: 5000 });
    await proxy.kill("SIGTERM");
    const res = await slow;
    expect(res.exit).toBe(0);
    expect(res.status).toBe(200);
    expect(res.body).toBe("slow from app");
    expect(await proxy.exited).toBe(0);
  });
});
