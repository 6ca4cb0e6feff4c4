// `deploy --client-ip-header NAME` (README "Forwarding"), end to end, as
// kamal-proxy does it (its TestService_ClientIPHeaderRewritesXForwardedFor):
// the named header's address stands in for the inbound X-Forwarded-For, so
// with --forward-headers the app sees it first, then the peer; it is the
// logged client address; a value that is not an IP address is ignored (and
// logged at debug level). Over HTTP/1.1, HTTPS and HTTP/2.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { startBackend, type Backend } from "./support/backend.ts";
import { deployOk, type Echo } from "./support/helpers.ts";
import { freePort, Proxy, tempDir } from "./support/proxy.ts";
import { createTestCa, curlHttps, httpsPortOf, type TestCa } from "./support/tls-tools.ts";

setDefaultTimeout(40_000);

const fast = ["--health-check-interval", "100ms"];
let proxy: Proxy;
let app: Backend;
let ca: TestCa;
let httpsPort = 0;

beforeAll(async () => {
  ca = await createTestCa(path.join(tempDir("parachute-client-ip-"), "ca"));
  const cert = await ca.issue("cip", ["tls.test"]);
  app = startBackend("app");
  proxy = await Proxy.start({ args: ["--debug", "--https-port", String(await freePort())] });
  httpsPort = httpsPortOf(proxy.logs);
  await Promise.all([
    // Without TLS --forward-headers is on by default, as in kamal-proxy.
    deployOk(proxy, "cip", ["--target", app.address, "--host", "cip.test", "--client-ip-header", "True-Client-IP", ...fast]),
    deployOk(proxy, "untrusted", ["--target", app.address, "--host", "untrusted.test", "--client-ip-header", "True-Client-IP", "--forward-headers=false", ...fast]),
    deployOk(proxy, "tls", [
      "--target",
      app.address,
      "--host",
      "tls.test",
      "--tls",
      "--tls-certificate-path",
      cert.cert,
      "--tls-private-key-path",
      cert.key,
      "--forward-headers",
      "--client-ip-header",
      "CF-Connecting-IP",
      ...fast,
    ]),
  ]);
});

afterAll(async () => {
  await proxy?.stop();
  await app?.stop();
});

/** The app's echo and the request's log line, over plain HTTP/1.1. */
async function viaHttp(host: string, headers: Record<string, string>): Promise<{ echo: Echo; line: Record<string, unknown> }> {
  const id = `cip-${crypto.randomUUID()}`;
  const res = await proxy.fetch("/echo", { host, headers: { ...headers, "x-request-id": id } });
  expect(res.status).toBe(200);
  const echo = (await res.json()) as Echo;
  const line = await proxy.waitForLog((l) => l.msg === "Request" && l.request_id === id);
  return { echo, line };
}

describe("over HTTP/1.1", () => {
  test("the header's address, then the peer, is the X-Forwarded-For the app sees; the client's own X-Forwarded-For is dropped", async () => {
    const { echo, line } = await viaHttp("cip.test", { "True-Client-IP": "203.0.113.9", "X-Forwarded-For": "6.6.6.6" });
    expect(echo.headers["x-forwarded-for"]).toBe("203.0.113.9, 127.0.0.1");
    // The header itself reaches the app as sent.
    expect(echo.headers["true-client-ip"]).toBe("203.0.113.9");
    expect(line.client_addr).toBe("203.0.113.9");
    expect(String(line.remote_addr)).toBe("127.0.0.1");
  });

  test("an IPv6 address works alike", async () => {
    const { echo, line } = await viaHttp("cip.test", { "True-Client-IP": "2001:db8::9" });
    expect(echo.headers["x-forwarded-for"]).toBe("2001:db8::9, 127.0.0.1");
    expect(line.client_addr).toBe("2001:db8::9");
  });

  test("without the header, the inbound X-Forwarded-For is extended as usual", async () => {
    const { echo, line } = await viaHttp("cip.test", { "X-Forwarded-For": "6.6.6.6" });
    expect(echo.headers["x-forwarded-for"]).toBe("6.6.6.6, 127.0.0.1");
    expect(line.client_addr).toBe("6.6.6.6");
  });

  test("a value that is not an IP address is ignored, with a debug line saying so", async () => {
    const mark = proxy.logMark();
    const { echo, line } = await viaHttp("cip.test", { "True-Client-IP": "203.0.113.9, 10.0.0.1", "X-Forwarded-For": "6.6.6.6" });
    expect(echo.headers["x-forwarded-for"]).toBe("6.6.6.6, 127.0.0.1");
    expect(line.client_addr).toBe("6.6.6.6");
    const debug = await proxy.waitForLog((l) => l.msg === "Client IP header ignored: not an IP address", 5_000, mark);
    expect(debug.level).toBe("debug");
    expect(debug.value).toBe("203.0.113.9, 10.0.0.1");
  });

  test("without --forward-headers no inbound X-Forwarded-For is trusted, as in kamal-proxy; the log still names the header's client", async () => {
    const { echo, line } = await viaHttp("untrusted.test", { "True-Client-IP": "203.0.113.9", "X-Forwarded-For": "6.6.6.6" });
    expect(echo.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(line.client_addr).toBe("203.0.113.9");
  });

  test("a request the proxy answers itself (a 401 of --basic-auth-file) logs the header's client too", async () => {
    const users = path.join(tempDir("parachute-client-ip-users-"), "users");
    fs.writeFileSync(users, `alice:${await Bun.password.hash("pw", { algorithm: "bcrypt", cost: 4 })}\n`);
    await deployOk(proxy, "gated", ["--target", app.address, "--host", "gated.test", "--client-ip-header", "True-Client-IP", "--basic-auth-file", users, ...fast]);
    const id = `cip-${crypto.randomUUID()}`;
    const res = await proxy.fetch("/echo", { host: "gated.test", headers: { "True-Client-IP": "203.0.113.44", "x-request-id": id } });
    await res.body?.cancel();
    expect(res.status).toBe(401);
    const line = await proxy.waitForLog((l) => l.msg === "Request" && l.request_id === id);
    expect(line.client_addr).toBe("203.0.113.44");
  });

  test("a bad header name fails the deploy, naming it", async () => {
    const result = await proxy.cli(["deploy", "bad", "--target", app.address, "--host", "bad.test", "--client-ip-header", "True Client IP"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('invalid header name "True Client IP"');
    expect((await proxy.listJson()).map((s) => s.name)).not.toContain("bad");
  });
});

describe("over HTTPS", () => {
  for (const [label, http1] of [
    ["HTTP/1.1", true],
    ["HTTP/2", false],
  ] as const) {
    test(`${label}: the header's address, then the peer, in X-Forwarded-For and the log`, async () => {
      const id = `cip-${crypto.randomUUID()}`;
      const res = await curlHttps("tls.test", httpsPort, "/echo", ca.certFile, {
        http1,
        headers: { "CF-Connecting-IP": "198.51.100.23", "X-Forwarded-For": "6.6.6.6", "X-Request-ID": id },
      });
      expect(res.status).toBe(200);
      expect(res.httpVersion).toBe(http1 ? "1.1" : "2");
      const echo = JSON.parse(res.body) as Echo;
      expect(echo.headers["x-forwarded-for"]).toBe("198.51.100.23, 127.0.0.1");
      expect(echo.headers["x-forwarded-proto"]).toBe("https");
      const line = await proxy.waitForLog((l) => l.msg === "Request" && l.request_id === id);
      expect(line.client_addr).toBe("198.51.100.23");
      expect(line.proto).toBe(http1 ? "HTTP/1.1" : "HTTP/2.0");
    });
  }
});
