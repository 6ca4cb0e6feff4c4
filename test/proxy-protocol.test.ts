// The PROXY protocol (README "PROXY protocol"), end to end: a real parachute
// with `run --proxy-protocol` or `--proxy-protocol-from`, raw sockets that
// send v1 and v2 headers as a TCP load balancer does, then HTTP, HTTPS/1.1
// or HTTP/2; the backend sees the header's address in X-Forwarded-For and the
// request log names it. Connections without a valid header are closed, one
// at a time; untrusted peers are served as if the option were off; workers
// and an upgrade keep the option.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as path from "node:path";
import * as tls from "node:tls";
import { startBackend, type Backend } from "./support/backend.ts";
import { deployOk, type Echo } from "./support/helpers.ts";
import { freePort, Proxy, runCli, tempDir } from "./support/proxy.ts";
import { RawConnection, rawExchange, requestHead } from "./support/raw-client.ts";
import { createTestCa, httpsPortOf, type TestCa } from "./support/tls-tools.ts";

setDefaultTimeout(40_000);

const HOST = "pp.test";
const opensslAvailable = Boolean(Bun.which("openssl"));
const backends: Backend[] = [];
const proxies: Proxy[] = [];

function backend(name: string): Backend {
  const b = startBackend(name);
  backends.push(b);
  return b;
}

async function start(args: string[]): Promise<Proxy> {
  const proxy = await Proxy.start({ args });
  proxies.push(proxy);
  return proxy;
}

afterAll(async () => {
  for (const p of proxies) await p.stop();
  for (const b of backends) await b.stop();
});

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const v1 = (source: string, family: "TCP4" | "TCP6" = "TCP4") =>
  Buffer.from(`PROXY ${family} ${source} ${family === "TCP4" ? "10.0.0.1" : "fd00::1"} 51000 80\r\n`);
/** A v2 PROXY header over TCP4 from `source`, with an ALPN TLV (skipped). */
function v2Tcp4(source: string): Buffer {
  const block = [...source.split(".").map(Number), 10, 0, 0, 1, 0xc7, 0x38, 0x01, 0xbb, 0x01, 0x00, 0x02, 0x68, 0x32];
  return Buffer.from([...SIGNATURE, 0x21, 0x11, 0, block.length, ...block]);
}
/** A v2 PROXY header over TCP6 from 2001:db8::42. */
function v2Tcp6(): Buffer {
  const address = (last: number) => [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), last];
  const block = [...address(0x42), ...address(0x01), 0xc7, 0x38, 0x01, 0xbb];
  return Buffer.from([...SIGNATURE, 0x21, 0x21, 0, block.length, ...block]);
}
const V2_LOCAL = Buffer.from([...SIGNATURE, 0x20, 0x00, 0, 0]);

const get = (pathAndQuery = "/echo", headers: [string, string][] = []) =>
  requestHead("GET", pathAndQuery, [["Host", HOST], ["Connection", "close"], ...headers]);

/** One request on a fresh connection, `prefix` first; the backend's echo. */
async function echoAfter(port: number, prefix: Uint8Array, pathAndQuery = "/echo"): Promise<Echo> {
  const { head, body } = await rawExchange(port, Buffer.concat([prefix, Buffer.from(get(pathAndQuery))]));
  expect(head.status, body.toString()).toBe(200);
  return JSON.parse(body.toString()) as Echo;
}

/** Sends `bytes` on a fresh connection; whether the proxy closes it without answering a byte. */
async function closedUnanswered(port: number, bytes: Uint8Array | string, timeoutMs = 5_000): Promise<{ closed: boolean; answered: number }> {
  const conn = await RawConnection.open(port);
  if (bytes.length) conn.write(bytes);
  const closed = await conn.closedWithin(timeoutMs);
  conn.close();
  return { closed, answered: conn.pending };
}

/** A TLS connection to the HTTPS port that starts with `prefix` (sent in the clear, as a balancer does). */
function tlsAfter(port: number, prefix: Uint8Array, ca: string, alpn: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: "127.0.0.1", port }, () => {
      raw.write(prefix);
      const secure = tls.connect({ socket: raw, servername: HOST, ca, ALPNProtocols: [alpn] }, () => resolve(secure));
      secure.on("error", reject);
    });
    raw.on("error", reject);
  });
}

/** GET over HTTPS/1.1 after a header; the echo. */
async function httpsEcho(port: number, prefix: Uint8Array, ca: string): Promise<Echo> {
  const socket = await tlsAfter(port, prefix, ca, "http/1.1");
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  const ended = new Promise((resolve) => socket.on("close", resolve));
  socket.write(get());
  await ended;
  const text = Buffer.concat(chunks).toString();
  expect(text.startsWith("HTTP/1.1 200"), text.slice(0, 200)).toBe(true);
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  return JSON.parse(body) as Echo;
}

/** GET over HTTP/2 after a header; the echo. */
async function h2Echo(port: number, prefix: Uint8Array, ca: string): Promise<Echo> {
  const socket = await tlsAfter(port, prefix, ca, "h2");
  expect(socket.alpnProtocol).toBe("h2");
  const session = http2.connect(`https://${HOST}:${port}`, { createConnection: () => socket });
  try {
    return await new Promise<Echo>((resolve, reject) => {
      const req = session.request({ ":path": "/echo" });
      let status = 0;
      let body = "";
      req.on("response", (headers) => (status = Number(headers[":status"])));
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => (status === 200 ? resolve(JSON.parse(body) as Echo) : reject(new Error(`status ${status}: ${body}`))));
      req.on("error", reject);
      req.end();
    });
  } finally {
    session.close();
  }
}

describe("--proxy-protocol (any sender trusted)", () => {
  let proxy: Proxy;
  let app: Backend;

  beforeAll(async () => {
    app = backend("app");
    proxy = await start(["--proxy-protocol", "--debug"]);
    await deployOk(proxy, "app", ["--host", HOST, "--target", app.address, "--health-check-interval", "100ms"]);
  });

  test("the start-up line says the listeners expect a header from any sender", () => {
    const started = proxy.logs.find((l) => l.msg === "Server started")!;
    expect(started.proxy_protocol).toBe(true);
    expect(started.proxy_protocol_from).toBe("any");
  });

  test("v1 TCP4 and TCP6: the header's address is the client's, in X-Forwarded-For and the request log", async () => {
    const mark = proxy.logMark();
    expect((await echoAfter(proxy.httpPort, v1("198.51.100.22"), "/echo?v1")).headers["x-forwarded-for"]).toBe("198.51.100.22");
    expect((await echoAfter(proxy.httpPort, v1("2001:db8::7", "TCP6"))).headers["x-forwarded-for"]).toBe("2001:db8::7");
    const line = await proxy.waitForLog((l) => l.msg === "Request" && l.query === "v1", 10_000, mark);
    expect(line.client_addr).toBe("198.51.100.22");
    expect(line.remote_addr).toBe("198.51.100.22");
  });

  test("v2 TCP4 (with a TLV) and TCP6", async () => {
    expect((await echoAfter(proxy.httpPort, v2Tcp4("203.0.113.9"))).headers["x-forwarded-for"]).toBe("203.0.113.9");
    expect((await echoAfter(proxy.httpPort, v2Tcp6())).headers["x-forwarded-for"]).toBe("2001:db8::42");
  });

  test("v2 LOCAL (the balancer's own health check) is served with the peer's address", async () => {
    expect((await echoAfter(proxy.httpPort, V2_LOCAL)).headers["x-forwarded-for"]).toBe("127.0.0.1");
  });

  test("a header and request that arrive in pieces", async () => {
    const bytes = Buffer.concat([v2Tcp4("192.0.2.77"), Buffer.from(get())]);
    const conn = await RawConnection.open(proxy.httpPort);
    const cuts = [0, 5, 13, 20, 30, bytes.length];
    for (let i = 1; i < cuts.length; i++) {
      conn.write(bytes.subarray(cuts[i - 1], cuts[i]));
      // Separate writes, so that they reach the proxy as separate reads.
      await Bun.sleep(20);
    }
    const head = await conn.readHead();
    const body = await conn.readBody(head);
    conn.close();
    expect(head.status).toBe(200);
    expect((JSON.parse(body.toString()) as Echo).headers["x-forwarded-for"]).toBe("192.0.2.77");
  });

  test("with --forward-headers (the default without TLS) the header's address is appended as the peer's would be", async () => {
    const { body } = await rawExchange(proxy.httpPort, Buffer.concat([v1("198.51.100.22"), Buffer.from(get("/echo", [["X-Forwarded-For", "203.0.113.1"]]))]));
    expect((JSON.parse(body.toString()) as Echo).headers["x-forwarded-for"]).toBe("203.0.113.1, 198.51.100.22");
  });

  test("no header: the connection is closed unanswered, and the app never sees the request; --debug says why", async () => {
    const before = app.requests;
    const mark = proxy.logMark();
    expect(await closedUnanswered(proxy.httpPort, get())).toEqual({ closed: true, answered: 0 });
    expect(app.requests).toBe(before);
    const line = await proxy.waitForLog((l) => l.msg === "PROXY protocol header refused; connection closed", 10_000, mark);
    expect(line).toMatchObject({ level: "debug", peer: "127.0.0.1", reason: "no PROXY protocol signature" });
  });

  test("garbage closes only that connection: an open one and the next one are served", async () => {
    const open = await RawConnection.open(proxy.httpPort);
    open.write(Buffer.concat([v1("198.51.100.1"), Buffer.from(requestHead("GET", "/echo", [["Host", HOST]]))]));
    const first = await open.readHead();
    await open.readBody(first);
    for (const garbage of [
      "PROXY TCP4 1.2.3.4\r\n",
      "PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n",
      `PROXY UNKNOWN ${"x".repeat(200)}`,
      Buffer.from([...SIGNATURE, 0x2f, 0x11, 0, 0]),
      Buffer.from([...SIGNATURE.slice(0, 11), 0x0b, 0x21, 0x11, 0, 12]),
      Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) & 0xff)),
    ]) {
      expect(await closedUnanswered(proxy.httpPort, garbage)).toEqual({ closed: true, answered: 0 });
    }
    open.write(requestHead("GET", "/echo", [["Host", HOST], ["Connection", "close"]]));
    const second = await open.readHead();
    const body = await open.readBody(second);
    expect((JSON.parse(body.toString()) as Echo).headers["x-forwarded-for"]).toBe("198.51.100.1");
    expect((await echoAfter(proxy.httpPort, v1("198.51.100.2"))).headers["x-forwarded-for"]).toBe("198.51.100.2");
    expect(proxy.exitCode).toBeNull();
  });

  test("a header that stops half way is closed after the header timeout (10 s)", async () => {
    const started = performance.now();
    expect(await closedUnanswered(proxy.httpPort, v2Tcp4("192.0.2.1").subarray(0, 20), 15_000)).toEqual({ closed: true, answered: 0 });
    expect(performance.now() - started).toBeGreaterThan(9_000);
  });
});

describe.skipIf(!opensslAvailable)("--proxy-protocol on the HTTPS port", () => {
  let proxy: Proxy;
  let ca: TestCa;
  let httpsPort: number;

  beforeAll(async () => {
    ca = await createTestCa(path.join(tempDir("parachute-pp-ca-"), "ca"));
    const cert = await ca.issue("pp", [HOST]);
    const app = backend("secure");
    proxy = await start(["--proxy-protocol", "--https-port", String(await freePort())]);
    httpsPort = httpsPortOf(proxy.logs);
    await deployOk(proxy, "app", ["--host", HOST, "--target", app.address, "--health-check-interval", "100ms", "--tls", "--tls-certificate-path", cert.cert, "--tls-private-key-path", cert.key]);
  });

  test("HTTPS/1.1 after a v2 header: the header's address is the client's", async () => {
    const echo = await httpsEcho(httpsPort, v2Tcp4("203.0.113.50"), ca.pem);
    expect(echo.headers["x-forwarded-for"]).toBe("203.0.113.50");
    expect(echo.headers["x-forwarded-proto"]).toBe("https");
  });

  test("HTTP/2 after a v1 header: the relayed connection keeps the header's address", async () => {
    const echo = await h2Echo(httpsPort, v1("198.51.100.60"), ca.pem);
    expect(echo.headers["x-forwarded-for"]).toBe("198.51.100.60");
  });

  test("a ClientHello without a header is closed unanswered", async () => {
    const hello = await new Promise<Buffer>((resolve) => {
      // The first flight of a real TLS client, captured off a local socket pair.
      const server = net.createServer((s) => s.once("data", (d: Buffer) => (s.destroy(), server.close(), resolve(d))));
      server.listen(0, "127.0.0.1", () => {
        const client = tls.connect({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port, servername: HOST });
        client.on("error", () => {});
      });
    });
    expect(hello[0]).toBe(0x16);
    expect(await closedUnanswered(httpsPort, hello)).toEqual({ closed: true, answered: 0 });
    expect((await httpsEcho(httpsPort, v1("198.51.100.61"), ca.pem)).headers["x-forwarded-for"]).toBe("198.51.100.61");
  });
});

describe("--proxy-protocol-from", () => {
  test("a peer outside the trusted ranges is served without a header, and its header is never believed", async () => {
    const app = backend("untrusted");
    const proxy = await start(["--proxy-protocol-from", "10.0.0.0/8", "--proxy-protocol-from", "2001:db8::/32"]);
    const started = proxy.logs.find((l) => l.msg === "Server started")!;
    expect(started.proxy_protocol_from).toEqual(["10.0.0.0/8", "2001:db8::/32"]);
    await deployOk(proxy, "app", ["--host", HOST, "--target", app.address, "--health-check-interval", "100ms"]);
    expect((await echoAfter(proxy.httpPort, new Uint8Array(0))).headers["x-forwarded-for"]).toBe("127.0.0.1");
    const spoofed = await rawExchange(proxy.httpPort, Buffer.concat([v1("198.51.100.22"), Buffer.from(get())]));
    expect(spoofed.head.status).toBe(400);
  });

  test("with workers, a trusted peer must send the header; an upgrade keeps the option", async () => {
    const app = backend("workers");
    const proxy = await start(["--workers", "2", "--proxy-protocol-from", "127.0.0.0/8"]);
    await deployOk(proxy, "app", ["--host", HOST, "--target", app.address, "--health-check-interval", "100ms"]);
    const check = async () => {
      // Several connections, so that both workers accept some.
      for (let i = 1; i <= 6; i++) {
        expect((await echoAfter(proxy.httpPort, v2Tcp4(`198.51.100.${i}`))).headers["x-forwarded-for"]).toBe(`198.51.100.${i}`);
        expect(await closedUnanswered(proxy.httpPort, get())).toEqual({ closed: true, answered: 0 });
      }
    };
    await check();
    const mark = proxy.logMark();
    const upgraded = await proxy.cli(["upgrade"]);
    expect(upgraded.code, upgraded.stderr).toBe(0);
    // The successor runs with the same command line, so with the same option.
    const successor = await proxy.waitForLog((l) => l.msg === "Server started", 10_000, mark);
    expect(successor.proxy_protocol_from).toEqual(["127.0.0.0/8"]);
    await check();
  }, 60_000);

  test("a bad CIDR is refused at start, naming it", async () => {
    const dir = tempDir();
    const result = await runCli(["run", "--http-port", "0", "--https-port", "0", "--state-dir", dir, "--socket", path.join(dir, "s.sock"), "--proxy-protocol-from", "10.0.0.0/8,10.1.0.0/33"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('invalid value for --proxy-protocol-from: invalid CIDR "10.1.0.0/33" (prefix must be 0-32)');
  });
});
