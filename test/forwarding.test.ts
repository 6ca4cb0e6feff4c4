// Forwarding (README "Forwarding", and the request log of "Logs and metrics"), end to end: a real
// parachute process in front of real backends, with raw sockets where fetch
// would hide what is on the wire. One rule per test.
import * as fs from "node:fs";
import * as net from "node:net";
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { deadPort, GZIP_BYTES, startBackend, type Backend } from "./support/backend.ts";
import { deployOk, echoVia, rawPathAndQuery } from "./support/helpers.ts";
import {
  bigByte,
  buildRequest,
  generatedBody,
  header,
  headLines,
  peakRss,
  rawRequest,
  startProbeBackend,
  startRawTarget,
  startStallTarget,
  waitFor,
  waitForStable,
  type ProbeBackend,
  type RawTarget,
  type StallTarget,
} from "./support/net.ts";
import { Proxy } from "./support/proxy.ts";
import { headerValue, RawConnection, requestHead } from "./support/raw-client.ts";

// Every CLI command is a new process: generous timeouts keep a loaded 2-core box from failing tests.
setDefaultTimeout(30_000);

const MiB = 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

let proxy: Proxy;
let app: Backend; // the standard echo backend
let sick1: Backend;
let sick2: Backend;
let rr1: Backend;
let rr2: Backend;
let probe: ProbeBackend;
let rawEcho: RawTarget; // answers with the raw request head it received
let closer: RawTarget; // closes the connection when the request arrives
let halfHead: RawTarget; // writes half a response head, then closes
let truncated: RawTarget; // sends a head announcing 100000 bytes, 10 bytes, then closes
let hopper: RawTarget; // answers with every kind of hop-by-hop response header
let doubleFramed: RawTarget; // answers with both Content-Length and a chunked body
let oneShot: RawTarget; // closes its connection after every answer without saying so
let stall: StallTarget; // reads the first bytes of a request, then nothing more

beforeAll(async () => {
  app = startBackend("app");
  sick1 = startBackend("sick-1");
  sick2 = startBackend("sick-2");
  rr1 = startBackend("rr-1");
  rr2 = startBackend("rr-2");
  probe = startProbeBackend();
  rawEcho = startRawTarget("echo-head");
  closer = startRawTarget("close");
  halfHead = startRawTarget("partial-head");
  truncated = startRawTarget("truncated-body");
  hopper = startRawTarget("hop-headers");
  doubleFramed = startRawTarget("length-and-chunked");
  oneShot = startRawTarget("close-after-answer");
  stall = await startStallTarget();
  proxy = await Proxy.start();
  const dead = await deadPort();
  await Promise.all([
    deployOk(proxy, "app", ["--target", app.address, "--host", "app.test"]),
    deployOk(proxy, "nofwd", ["--target", app.address, "--host", "nofwd.test", "--forward-headers=false"]),
    deployOk(proxy, "logged", [
      "--target",
      app.address,
      "--host",
      "log.test",
      "--log-request-header",
      "X-Custom",
      "--log-response-header",
      "X-Backend",
    ]),
    deployOk(proxy, "impatient", ["--target", app.address, "--host", "timeout.test", "--target-timeout", "300ms"]),
    deployOk(proxy, "probe", ["--target", probe.address, "--host", "probe.test"]),
    deployOk(proxy, "raw", ["--target", rawEcho.address, "--host", "raw.test", "--force"]),
    deployOk(proxy, "dead", ["--target", `127.0.0.1:${dead}`, "--host", "dead.test", "--force"]),
    deployOk(proxy, "closer", ["--target", closer.address, "--host", "closer.test", "--force"]),
    deployOk(proxy, "halfhead", ["--target", halfHead.address, "--host", "halfhead.test", "--force"]),
    deployOk(proxy, "truncated", ["--target", truncated.address, "--host", "truncated.test", "--force"]),
    deployOk(proxy, "stall", ["--target", stall.address, "--host", "stall.test", "--force"]),
    deployOk(proxy, "hopper", ["--target", hopper.address, "--host", "hopper.test", "--force"]),
    deployOk(proxy, "doubleframed", ["--target", doubleFramed.address, "--host", "doubleframed.test", "--force"]),
    deployOk(proxy, "oneshot", ["--target", oneShot.address, "--host", "oneshot.test", "--force"]),
    deployOk(proxy, "rr", ["--target", `${rr1.address},${rr2.address}`, "--host", "rr.test"]),
    deployOk(proxy, "sick", [
      "--target",
      `${sick1.address},${sick2.address}`,
      "--host",
      "sick.test",
      "--health-check-interval",
      "100ms",
      "--health-check-timeout",
      "1s",
    ]),
  ]);
});

afterAll(async () => {
  await proxy?.stop();
  if (proxy) fs.rmSync(proxy.stateDir, { recursive: true, force: true });
  await Promise.all([app, sick1, sick2, rr1, rr2, probe].map((b) => b?.stop()));
  for (const t of [rawEcho, closer, halfHead, truncated, hopper]) t?.stop();
  await stall?.stop();
});

/** The Request log line for a request id, once it has been written. */
function requestLog(requestId: string, timeoutMs = 10_000) {
  return proxy.waitForLog((l) => l.msg === "Request" && l.request_id === requestId, timeoutMs);
}

async function expectHtmlError(res: Response, status: number) {
  const body = await res.text();
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type") ?? "").toStartWith("text/html");
  expect(body).toMatch(/<html/i);
  return body;
}

describe("target selection", () => {
  test("requests go to the healthy targets round robin", async () => {
    const answered: string[] = [];
    for (let i = 0; i < 6; i++) answered.push((await echoVia(proxy, "/", "rr.test")).backend);
    expect(new Set(answered)).toEqual(new Set(["rr-1", "rr-2"]));
    // Strict alternation.
    for (let i = 1; i < answered.length; i++) expect(answered[i]).not.toBe(answered[i - 1]);
  });

  test("X-Parachute-Target tells the app which target the request was routed to; a client cannot set it", async () => {
    const byBackend = new Map<string, string>();
    for (let i = 0; i < 4; i++) {
      const echo = await echoVia(proxy, "/", "rr.test", { headers: { "X-Parachute-Target": "spoofed:1" } });
      byBackend.set(echo.backend, echo.headers["x-parachute-target"]!);
    }
    expect(Object.fromEntries(byBackend)).toEqual({ "rr-1": rr1.address, "rr-2": rr2.address });
  });
});

describe("request line and Host", () => {
  test("the original Host header is kept", async () => {
    const echo = await echoVia(proxy, "/", "app.test");
    expect(echo.headers.host).toBe("app.test");
    const withPort = await echoVia(proxy, "/", "App.Test:8080");
    expect(withPort.headers.host).toBe("App.Test:8080");
  });

  test("the path and raw query are passed verbatim (percent-encodings, +, repeated keys, empty values)", async () => {
    const target = "/a%2Fb/c+d%20e/%C3%A9?x=1&x=2&empty=&flag&enc=%2F%3D%26&plus=a+b&sp=%20&amp;x=3";
    const echo = await echoVia(proxy, target, "app.test");
    expect(rawPathAndQuery(echo.url)).toBe(target);
  });

  test("the request target is forwarded verbatim on the wire (raw socket on both sides)", async () => {
    const target = "/p%2Fq/r+s?k=v%2Fw&k=&k&z=a+b%2B";
    const res = await rawRequest(proxy.httpPort, buildRequest("GET", target, [["Host", "raw.test"]]));
    expect(res.status).toBe(200);
    expect(res.body.split("\r\n")[0]).toBe(`GET ${target} HTTP/1.1`);
  });

  // Bun's fetch collapses a *leading* `//`; such targets go through node:http.
  test("a path with empty segments (`//`) is forwarded verbatim", async () => {
    const target = "//double//slash/?q=//x";
    const res = await rawRequest(proxy.httpPort, buildRequest("GET", target, [["Host", "raw.test"]]));
    expect(res.status).toBe(200);
    expect(res.body.split("\r\n")[0]).toBe(`GET ${target} HTTP/1.1`);
  });

  test("a `//` path: method, body, forwarded headers and the app's answer go both ways; a dead target is 502", async () => {
    const res = await rawRequest(
      proxy.httpPort,
      buildRequest("POST", "//upload//here?x=1", [["Host", "app.test"], ["X-Request-ID", "req-slash"]], "hello body"),
    );
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body);
    expect(rawPathAndQuery(echo.url)).toBe("//upload//here?x=1");
    expect(echo.method).toBe("POST");
    expect(echo.bodyBytes).toBe(10);
    expect(echo.headers["x-request-id"]).toBe("req-slash");
    expect(echo.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(echo.headers.host).toBe("app.test");
    const dead = await rawRequest(proxy.httpPort, buildRequest("GET", "//x", [["Host", "dead.test"]]));
    expect(dead.status).toBe(502);
  });

  test("the method and request body reach the target", async () => {
    const echo = await echoVia(proxy, "/put", "app.test", { method: "PUT", body: "twelve bytes" });
    expect(echo.method).toBe("PUT");
    expect(echo.bodyBytes).toBe(12);
  });
});

describe("X-Forwarded-* and X-Request-* headers", () => {
  test("X-Forwarded-For is the client IP", async () => {
    const echo = await echoVia(proxy, "/", "app.test");
    expect(echo.headers["x-forwarded-for"]).toBe("127.0.0.1");
  });

  test("with --forward-headers (the default without TLS) the client IP is appended to an inbound X-Forwarded-For", async () => {
    const echo = await echoVia(proxy, "/", "app.test", { headers: { "X-Forwarded-For": "203.0.113.7, 198.51.100.2" } });
    expect(echo.headers["x-forwarded-for"]).toBe("203.0.113.7, 198.51.100.2, 127.0.0.1");
  });

  test("with --forward-headers=false inbound X-Forwarded-* values are discarded and replaced", async () => {
    const echo = await echoVia(proxy, "/", "nofwd.test", {
      headers: {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "spoofed.example",
        "X-Forwarded-Port": "8443",
        "X-Forwarded-Prefix": "/evil",
      },
    });
    expect(echo.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(echo.headers["x-forwarded-proto"]).toBe("http");
    expect(echo.headers["x-forwarded-host"]).toBe("nofwd.test");
    expect(echo.headers["x-forwarded-port"]).toBeUndefined();
    expect(echo.headers["x-forwarded-prefix"]).toBeUndefined();
  });

  test("X-Forwarded-Proto is http on the HTTP listener", async () => {
    const echo = await echoVia(proxy, "/", "app.test");
    expect(echo.headers["x-forwarded-proto"]).toBe("http");
  });

  test("X-Forwarded-Host is the original host", async () => {
    const echo = await echoVia(proxy, "/", "app.test");
    expect(echo.headers["x-forwarded-host"]).toBe("app.test");
  });

  test("an inbound X-Request-ID is kept", async () => {
    const echo = await echoVia(proxy, "/", "app.test", { headers: { "X-Request-ID": "my-request-42" } });
    expect(echo.headers["x-request-id"]).toBe("my-request-42");
  });

  test("without an inbound X-Request-ID each request gets a new UUID", async () => {
    const first = await echoVia(proxy, "/", "app.test");
    const second = await echoVia(proxy, "/", "app.test");
    expect(first.headers["x-request-id"]).toMatch(UUID);
    expect(second.headers["x-request-id"]).toMatch(UUID);
    expect(first.headers["x-request-id"]).not.toBe(second.headers["x-request-id"]);
  });

  test("an empty inbound X-Request-ID is replaced by a new UUID", async () => {
    const res = await rawRequest(proxy.httpPort, buildRequest("GET", "/", [["Host", "app.test"], ["X-Request-ID", ""]]));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).headers["x-request-id"]).toMatch(UUID);
  });

  test("a request with `Upgrade: websocket` that is not a handshake is forwarded as an ordinary request, Upgrade dropped", async () => {
    const res = await rawRequest(proxy.httpPort, buildRequest("GET", "/plain", [["Host", "app.test"], ["Upgrade", "websocket"]]));
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body).headers as Record<string, string>;
    expect(seen.upgrade).toBeUndefined();
    expect(Object.keys(seen).filter((name) => name.startsWith("sec-websocket"))).toEqual([]);
  });

  test("an inbound X-Request-Start is kept", async () => {
    const echo = await echoVia(proxy, "/", "app.test", { headers: { "X-Request-Start": "t=1234567890123" } });
    expect(echo.headers["x-request-start"]).toBe("t=1234567890123");
  });

  test("without an inbound X-Request-Start, `t=<unix ms>` of the arrival is added", async () => {
    const before = Date.now();
    const echo = await echoVia(proxy, "/", "app.test");
    const after = Date.now();
    const match = /^t=(\d+)$/.exec(echo.headers["x-request-start"] ?? "");
    expect(match).not.toBeNull();
    const t = Number(match![1]);
    expect(t).toBeGreaterThanOrEqual(before - 5);
    expect(t).toBeLessThanOrEqual(after + 5);
  });
});

describe("hop-by-hop headers", () => {
  test("are not forwarded to the target: Connection and the headers it names, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade", async () => {
    const res = await rawRequest(
      proxy.httpPort,
      buildRequest("GET", "/hop", [
        ["Host", "raw.test"],
        ["Connection", "close, X-Private, X-Other"],
        ["X-Private", "secret"],
        ["X-Other", "other"],
        ["Keep-Alive", "timeout=5, max=100"],
        ["Proxy-Connection", "keep-alive"],
        ["TE", "trailers"],
        ["Trailer", "X-Checksum"],
        ["Upgrade", "h2c"],
        ["X-Kept", "kept"],
      ]),
    );
    expect(res.status).toBe(200);
    const seen = headLines(res.body);
    const names = seen.map(([n]) => n);
    expect(names).toContain("x-kept");
    for (const name of ["x-private", "x-other", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"]) {
      expect(names, `${name} reached the target`).not.toContain(name);
    }
    // The proxy may open its own keep-alive connection, but must not pass on the client's Connection tokens.
    for (const [, value] of seen.filter(([n]) => n === "connection")) {
      expect(value.toLowerCase()).not.toContain("x-private");
      expect(value.toLowerCase()).not.toContain("x-other");
    }
  });

  test("are not forwarded to the client: Connection-named headers, Keep-Alive, Proxy-Connection", async () => {
    // Sanity: the backend really sends them.
    const direct = await rawRequest(app.port, buildRequest("GET", "/hop", [["Host", "app.test"]]));
    expect(header(direct, "x-private")).toBe("secret");
    expect(header(direct, "keep-alive")).toBe("timeout=5");

    const res = await rawRequest(proxy.httpPort, buildRequest("GET", "/hop", [["Host", "app.test"]]));
    expect(res.status).toBe(200);
    expect(res.body).toBe("hop");
    const names = res.headers.map(([n]) => n);
    expect(names).not.toContain("x-private");
    expect(names).not.toContain("keep-alive");
    expect(names).not.toContain("proxy-connection");
    for (const [, value] of res.headers.filter(([n]) => n === "connection")) {
      expect(value.toLowerCase()).not.toContain("x-private");
    }
  });

  test("are not forwarded to the client: also Upgrade and Trailer, and every header Connection names", async () => {
    const res = await rawRequest(proxy.httpPort, buildRequest("GET", "/", [["Host", "hopper.test"]]));
    expect(res.status).toBe(200);
    expect(res.body).toBe("hop");
    const names = res.headers.map(([n]) => n);
    expect(names).toContain("x-kept");
    for (const name of ["x-private", "x-secret-two", "keep-alive", "proxy-connection", "upgrade", "trailer"]) {
      expect(names, `${name} reached the client`).not.toContain(name);
    }
    for (const [, value] of res.headers.filter(([n]) => n === "connection")) {
      expect(value.toLowerCase()).not.toContain("x-private");
      expect(value.toLowerCase()).not.toContain("x-secret-two");
    }
  });
});

describe("bodies and responses pass through", () => {
  test("gzip responses pass byte for byte with their Content-Encoding", async () => {
    // decompress: false so that the client, too, hands over the bytes as they arrived.
    const res = await fetch(proxy.url("/gzip"), { headers: { Host: "app.test", "Accept-Encoding": "gzip" }, decompress: false });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-encoding")).toBe("gzip");
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect(bytes.byteLength).toBe(GZIP_BYTES.byteLength);
    expect(Buffer.from(bytes).equals(Buffer.from(GZIP_BYTES))).toBe(true);
  });

  test("redirects from the app are not followed: the 302 and its Location reach the client", async () => {
    const before = app.seen.length;
    const res = await proxy.fetch("/redirect", { host: "app.test" });
    expect(res.status).toBe(302);
    expect(res.headers.get("location")).toBe("/echo?from=redirect");
    await res.body?.cancel();
    // The proxy made exactly one request: it did not follow the Location itself.
    expect(app.seen.slice(before).map((s) => rawPathAndQuery(s.url))).toEqual(["/redirect"]);
  });

  test("several Set-Cookie headers stay separate", async () => {
    const res = await proxy.fetch("/cookies", { host: "app.test" });
    expect(res.status).toBe(200);
    expect(res.headers.getSetCookie()).toEqual(["a=1; Path=/", "b=2; Path=/; HttpOnly", "c=3, with comma; Path=/"]);
  });

  test("the app's own errors pass through untouched", async () => {
    for (const status of [500, 503, 404, 502]) {
      const res = await proxy.fetch(`/status/${status}`, { host: "app.test" });
      expect(res.status).toBe(status);
      expect(await res.text()).toBe(`app says ${status}`);
      expect(res.headers.get("content-type") ?? "").not.toContain("text/html");
      expect(res.headers.get("x-backend")).toBe("app");
    }
  });

  test("a 10 MB request body reaches the target whole", async () => {
    const body = new Uint8Array(10 * MiB).fill(7);
    const echo = await echoVia(proxy, "/upload", "app.test", { method: "POST", body });
    expect(echo.method).toBe("POST");
    expect(echo.bodyBytes).toBe(10 * MiB);
  });

  test("a request body is streamed: the target sees the first bytes before the client has sent the rest", async () => {
    const id = crypto.randomUUID();
    const first = new Uint8Array(64 * 1024).fill(1);
    const rest = 4 * MiB;
    let stage = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (stage === 0) {
          stage = 1;
          controller.enqueue(first);
          return;
        }
        if (stage === 1) {
          stage = 2;
          // Hold back the rest until the target reports the first bytes: a
          // proxy that buffered whole request bodies would never get here.
          const arrived = await Promise.race([
            probe.firstUploadBytes(id).then(() => true),
            Bun.sleep(5000).then(() => false),
          ]);
          if (!arrived) {
            controller.error(new Error("the target did not see the first bytes within 5 s: the request body is not streamed"));
            return;
          }
          controller.enqueue(new Uint8Array(rest).fill(2));
          return;
        }
        controller.close();
      },
    });
    const res = await proxy.fetch(`/upload-probe?id=${id}`, { host: "probe.test", method: "POST", body });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { bodyBytes: number }).bodyBytes).toBe(first.byteLength + rest);
  });

  test("a streamed response arrives chunk by chunk as the target produces it", async () => {
    const res = await proxy.fetch("/stream?chunks=5&interval=200", { host: "app.test" });
    expect(res.status).toBe(200);
    const lines: { text: string; arrived: number }[] = [];
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of res.body!) {
      const arrived = Date.now();
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) !== -1) {
        lines.push({ text: buffered.slice(0, nl), arrived });
        buffered = buffered.slice(nl + 1);
      }
    }
    expect(lines.map((l) => l.text.split(" at ")[0])).toEqual(["chunk 0", "chunk 1", "chunk 2", "chunk 3", "chunk 4"]);
    const producedLast = Number(lines[4]!.text.split(" at ")[1]);
    // The first chunk reached the client long before the target produced the last one ...
    expect(lines[0]!.arrived).toBeLessThan(producedLast - 400);
    // ... and the client saw the chunks spread over the ~800 ms the target took.
    expect(lines[4]!.arrived - lines[0]!.arrived).toBeGreaterThanOrEqual(600);
  });
});

describe("large bodies", () => {
  // The proxy's peak RSS before these tests: what they may add is measured from here.
  let peakBefore: number | undefined;
  beforeAll(async () => {
    peakBefore = await peakRss(proxy.processIds());
  });

  test("a 150 MiB upload (over Bun's default 128 MiB limit) passes, streamed", async () => {
    const size = 150 * MiB;
    const echo = await echoVia(proxy, "/big-upload", "app.test", { method: "POST", body: generatedBody(size) });
    expect(echo.bodyBytes).toBe(size);
  }, 60_000);

  test("a 200 MiB download passes intact", async () => {
    const size = 200 * MiB;
    const res = await proxy.fetch(`/big?n=${size}`, { host: "probe.test" });
    expect(res.status).toBe(200);
    let received = 0;
    let mismatch = -1;
    for await (const chunk of res.body!) {
      // Spot-check the pattern at the start and the end of every chunk.
      for (const i of [0, chunk.byteLength - 1]) {
        if (mismatch === -1 && chunk[i] !== bigByte(received + i)) mismatch = received + i;
      }
      received += chunk.byteLength;
    }
    expect(mismatch).toBe(-1);
    expect(received).toBe(size);
  }, 60_000);

  test("a client that stops reading slows the target down (backpressure), and closing cancels it", async () => {
    const sentBefore = probe.bigSent;
    const cancelledBefore = probe.bigCancelled;
    const socket = net.connect(proxy.httpPort, "127.0.0.1");
    try {
      await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      socket.write(`GET /big?n=${4 * 1024 * MiB} HTTP/1.1\r\nHost: probe.test\r\n\r\n`);
      // Read the first bytes, then stop reading.
      await new Promise<void>((resolve) =>
        socket.once("data", () => {
          socket.pause();
          resolve();
        }),
      );
      const sent = (await waitForStable(() => probe.bigSent, 500, 15_000, "bytes the target produced")) - sentBefore;
      // Only socket buffers' worth was produced, not the 4 GiB body.
      expect(sent).toBeGreaterThan(0);
      expect(sent).toBeLessThan(64 * MiB);
    } finally {
      socket.destroy();
    }
    await waitFor(() => probe.bigCancelled > cancelledBefore, 5000, "the target's stream to be cancelled");
  }, 30_000);

  test("a target that stops reading slows the client's upload down (backpressure), and the client leaving closes the upstream", async () => {
    const connectionsBefore = stall.connections;
    const closedBefore = stall.closed;
    let pulled = 0;
    const block = new Uint8Array(MiB).fill(0x62);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += block.byteLength;
        controller.enqueue(block.slice());
      },
    });
    const controller = new AbortController();
    const pending = proxy
      .fetch("/upload", { host: "stall.test", method: "POST", body, signal: controller.signal })
      .then((res) => res.status)
      .catch((error: Error) => error);
    try {
      await waitFor(() => stall.connections > connectionsBefore && stall.received > 0, 10_000, "the upload to reach the target");
      const accepted = await waitForStable(() => pulled, 500, 15_000, "bytes the client could send");
      // Only socket buffers' worth left the client, not an endless body.
      expect(accepted).toBeLessThan(64 * MiB);
    } finally {
      controller.abort();
    }
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => stall.closed > closedBefore, 5000, "the proxy to close the upstream connection");
  }, 30_000);

  test("large bodies do not make the proxy hold them in memory", async () => {
    // Runs after the 150 MiB upload and the 200 MiB download: holding either
    // would raise the proxy's peak RSS by at least 150 MiB. Streaming adds
    // socket and GC slack only (about 25 MiB here; 100 MiB leaves room for a
    // lazy collector on a busy machine).
    const peak = await peakRss(proxy.processIds());
    if (peak === undefined || peakBefore === undefined) return; // no /proc on this platform
    expect(peak - peakBefore).toBeLessThan(100 * MiB);
  });
});

describe("cancellation", () => {
  test("a client that disconnects while waiting for the response cancels the upstream request", async () => {
    const id = crypto.randomUUID();
    const controller = new AbortController();
    const pending = proxy
      .fetch(`/hang?id=${id}`, { host: "probe.test", headers: { "X-Request-ID": id }, signal: controller.signal })
      .catch((error: Error) => error);
    await waitFor(() => probe.hanging.has(id), 5000, "the request to reach the target");
    const aborted = Date.now();
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => probe.cancelled.find((c) => c.id === id), 5000, "the target to see the request cancelled");
    expect(probe.cancelled.find((c) => c.id === id)!.at - aborted).toBeLessThan(2000);
    const line = await requestLog(id, 5000);
    expect(line.status).toBe(499);
    expect(line.service).toBe("probe");
  });

  test("a client that disconnects during a long download cancels the upstream stream", async () => {
    const cancelledBefore = probe.bigCancelled;
    const controller = new AbortController();
    const res = await proxy.fetch(`/big?n=${50 * 1024 * MiB}`, { host: "probe.test", signal: controller.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let received = 0;
    while (received < 4 * MiB) {
      const { value, done } = await reader.read();
      if (done) break;
      received += value.byteLength;
    }
    controller.abort();
    await reader.cancel().catch(() => {});
    await waitFor(() => probe.bigCancelled > cancelledBefore, 5000, "the target's stream to be cancelled");
    expect(probe.bigActive).toBe(0);
  });
});

describe("errors the proxy produces", () => {
  test("502 (HTML) when the target refuses the connection", async () => {
    const res = await proxy.fetch("/", { host: "dead.test" });
    await expectHtmlError(res, 502);
  });

  test("502 (HTML) when the target closes the connection on receipt of the request", async () => {
    const before = closer.connections;
    const res = await proxy.fetch("/", { host: "closer.test" });
    await expectHtmlError(res, 502);
    expect(closer.connections).toBeGreaterThan(before);
  });

  test("502 (HTML) when the target breaks the connection in the middle of its response head", async () => {
    const before = halfHead.heads.length;
    const res = await proxy.fetch("/", { host: "halfhead.test" });
    await expectHtmlError(res, 502);
    expect(halfHead.heads.length).toBeGreaterThan(before);
  });

  test("a response body cut short by the target is not delivered to the client as complete", async () => {
    // The target announced 200 and 100000 bytes, sent 10 and closed. Whether or
    // not the proxy has already sent the head, the client must see a broken
    // transfer (or a 502), never a clean response that looks complete.
    const res = await rawRequest(proxy.httpPort, buildRequest("GET", "/", [["Host", "truncated.test"]]));
    expect(truncated.heads.length).toBeGreaterThan(0);
    if (res.status === 502) return;
    expect(res.complete, `looked complete:\n${res.raw}`).toBe(false);
    expect(res.body.length).toBeLessThan(100000);
  });

  test("503 (HTML) when no target is healthy", async () => {
    // Both targets serve; then both fail their health checks.
    expect((await echoVia(proxy, "/", "sick.test")).backend).toMatch(/^sick-/);
    sick1.setHealth(500);
    sick2.setHealth(500);
    try {
      const unhealthy = (address: string) => (l: Record<string, unknown>) =>
        l.msg === "Target health changed" && l.target === address && l.to === "unhealthy";
      await proxy.waitForLog(unhealthy(sick1.address), 5000);
      await proxy.waitForLog(unhealthy(sick2.address), 5000);
      const requestsBefore = sick1.requests + sick2.requests;
      await expectHtmlError(await proxy.fetch("/", { host: "sick.test" }), 503);
      expect(sick1.requests + sick2.requests).toBe(requestsBefore);
    } finally {
      sick1.setHealth(200);
      sick2.setHealth(200);
    }
    // They rejoin once they pass again.
    await waitFor(async () => (await proxy.fetch("/", { host: "sick.test" }).then((r) => (r.body?.cancel(), r.status))) === 200, 5000, "a target to rejoin");
  });

  test("504 (HTML) when the target does not answer within --target-timeout", async () => {
    const started = Date.now();
    const res = await proxy.fetch("/slow?ms=3000", { host: "timeout.test" });
    // The target would have answered 200 at 3 s: the 504 came before, once the timeout had passed.
    await expectHtmlError(res, 504);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  test("--target-timeout bounds the wait for response headers only: a longer streamed body is not cut", async () => {
    const res = await proxy.fetch("/stream?chunks=4&interval=200", { host: "timeout.test" });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.trim().split("\n").map((l) => l.split(" at ")[0])).toEqual(["chunk 0", "chunk 1", "chunk 2", "chunk 3"]);
  });

  test("404 (HTML) when no service matches", async () => {
    await expectHtmlError(await proxy.fetch("/", { host: "unknown.test" }), 404);
  });
});

describe("request log", () => {
  test("each proxied request logs one `Request` line with the documented fields", async () => {
    const id = `log-${crypto.randomUUID()}`;
    const started = Date.now();
    const res = await proxy.fetch("/echo/path?a=1&b=two", {
      host: "log.test",
      method: "POST",
      body: "hello",
      headers: { "User-Agent": "e2e-agent/1.0", "X-Request-ID": id, "X-Custom": "custom-value" },
    });
    expect(res.status).toBe(200);
    const body = await res.arrayBuffer();
    const line = await requestLog(id);
    expect(proxy.logs.filter((l) => l.msg === "Request" && l.request_id === id)).toHaveLength(1);

    expect(typeof line.time).toBe("string");
    expect(Math.abs(Date.parse(line.time as string) - started)).toBeLessThan(10_000);
    expect(line.level).toBe("info");
    expect(line.service).toBe("logged");
    expect(line.target).toBe(app.address);
    expect(line.host).toBe("log.test");
    expect(line.method).toBe("POST");
    expect(line.path).toBe("/echo/path");
    expect(line.query).toBe("a=1&b=two");
    expect(line.status).toBe(200);
    expect(typeof line.duration_ms).toBe("number");
    expect(line.duration_ms as number).toBeGreaterThanOrEqual(0);
    expect(line.duration_ms as number).toBeLessThan(10_000);
    expect(line.request_id).toBe(id);
    expect(line.client_addr).toBe("127.0.0.1");
    expect(String(line.remote_addr)).toStartWith("127.0.0.1");
    expect(line.user_agent).toBe("e2e-agent/1.0");
    expect(line.req_content_length).toBe(5);
    expect(line.resp_content_length).toBe(body.byteLength);
    expect(line.proto).toBe("HTTP/1.1");
    expect(line.scheme).toBe("http");
    // --log-request-header / --log-response-header
    expect(line.req_x_custom ?? line["req_x-custom"]).toBe("custom-value");
    expect(line.resp_x_backend ?? line["resp_x-backend"]).toBe("app");
  });

  test("proto is the HTTP version the client spoke (HTTP/1.0 here)", async () => {
    const id = `log-${crypto.randomUUID()}`;
    const res = await rawRequest(proxy.httpPort, `GET /old-client HTTP/1.0\r\nHost: app.test\r\nX-Request-ID: ${id}\r\n\r\n`);
    expect(res.status).toBe(200);
    const line = await requestLog(id);
    expect(line.proto).toBe("HTTP/1.0");
  });

  test("the logged request id is the one sent to the target when the proxy generated it", async () => {
    const echo = await echoVia(proxy, "/generated-id", "app.test");
    const id = echo.headers["x-request-id"]!;
    expect(id).toMatch(UUID);
    const line = await requestLog(id);
    expect(line.path).toBe("/generated-id");
    expect(line.status).toBe(200);
  });

  test("with a trusted X-Forwarded-For, client_addr is the original client and remote_addr the peer", async () => {
    const id = `log-${crypto.randomUUID()}`;
    const res = await proxy.fetch("/", { host: "app.test", headers: { "X-Request-ID": id, "X-Forwarded-For": "203.0.113.9" } });
    await res.body?.cancel();
    const line = await requestLog(id);
    expect(line.client_addr).toBe("203.0.113.9");
    expect(String(line.remote_addr)).toStartWith("127.0.0.1");
  });

  test("proxy errors are logged with their status", async () => {
    const id = `log-${crypto.randomUUID()}`;
    const res = await proxy.fetch("/", { host: "dead.test", headers: { "X-Request-ID": id } });
    await res.body?.cancel();
    expect(res.status).toBe(502);
    const line = await requestLog(id);
    expect(line.status).toBe(502);
    expect(line.service).toBe("dead");
    expect(line.host).toBe("dead.test");
  });

  test("resp_content_length of a proxy error is the size of the error page sent", async () => {
    for (const host of ["dead.test", "nothing-here.test"]) {
      const id = `log-${crypto.randomUUID()}`;
      const res = await proxy.fetch("/", { host, headers: { "X-Request-ID": id } });
      const page = await res.arrayBuffer();
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(page.byteLength).toBeGreaterThan(0);
      const line = await requestLog(id);
      expect(line.status).toBe(res.status);
      expect(line.resp_content_length, `${host}: logged ${line.resp_content_length} for a ${page.byteLength}-byte page`).toBe(page.byteLength);
    }
  });
});

describe("framing edge cases on the listener", () => {
  const echoOf = (res: { status: number; body: string }) => {
    expect(res.status).toBe(200);
    return JSON.parse(res.body) as { backend: string; method: string; url: string; headers: Record<string, string>; bodyBytes: number };
  };

  test("bytes after a `Connection: close` request do not replace its answer", async () => {
    const res = await rawRequest(
      proxy.httpPort,
      "POST /after-close HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcGET /next HTTP/1.1\r\nHost: app.test\r\n\r\n",
    );
    const echo = echoOf(res);
    expect([echo.method, new URL(echo.url).pathname, echo.bodyBytes]).toEqual(["POST", "/after-close", 3]);
  });

  test("garbage after a keep-alive request: that request's answer arrives, then the connection closes", async () => {
    const res = await rawRequest(proxy.httpPort, "POST /then-garbage HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nokgar bage\r\n\r\n");
    const echo = echoOf(res);
    expect([new URL(echo.url).pathname, echo.bodyBytes]).toEqual(["/then-garbage", 2]);
    expect(res.complete).toBe(true);
  });

  test("a request offering another protocol (Upgrade: h2c) is answered as an ordinary request, its body included", async () => {
    const post = await rawRequest(
      proxy.httpPort,
      "POST /h2c HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello",
    );
    const echo = echoOf(post);
    expect([echo.method, echo.bodyBytes, echo.headers.upgrade]).toEqual(["POST", 5, undefined]);
    // With a request pipelined behind it: the first is answered (the connection then closes).
    const get = await rawRequest(
      proxy.httpPort,
      "GET /h2c-first HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nGET /h2c-second HTTP/1.1\r\nHost: app.test\r\n\r\n",
    );
    expect(new URL(echoOf(get).url).pathname).toBe("/h2c-first");
  });

  test("a malformed chunked body (bad chunk size) is a 400, the connection closes, and the target never sees the request", async () => {
    const res = await rawRequest(proxy.httpPort, "POST /bad-chunks HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
    expect(res.status).toBe(400);
    expect(res.headers.find(([name]) => name === "connection")?.[1]).toBe("close");
    expect(app.seen.some((s) => s.url.includes("/bad-chunks"))).toBe(false);
  });

  test.each([
    ["xchunked", 400],
    ["gzip", 400],
    ["gzip, chunked", 501],
  ])("Transfer-Encoding %j is refused with %d and never reaches the target", async (coding, status) => {
    const path = `/coding-${coding.replace(/\W+/g, "-")}`;
    const res = await rawRequest(proxy.httpPort, `POST ${path} HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: ${coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
    expect(res.status).toBe(status as number);
    expect(app.seen.some((s) => s.url.includes(path))).toBe(false);
  });

  test(
    "a client sending its head one line a second is not cut at 12 s: a request head has 60 s to arrive",
    async () => {
      const conn = await RawConnection.open(proxy.httpPort);
      try {
        conn.write("GET /echo?slow=head HTTP/1.1\r\nHost: app.test\r\n");
        const started = performance.now();
        for (let i = 0; performance.now() - started < 15_000; i++) {
          conn.write(`X-Drip-${i}: ${i}\r\n`);
          await Bun.sleep(1_000); // the client's own pace, not a wait for the proxy
          expect(conn.closed).toBe(false);
        }
        conn.write("Connection: close\r\n\r\n");
        const head = await conn.readHead(5_000);
        expect(head.status).toBe(200);
      } finally {
        conn.close();
      }
    },
    30_000,
  );

  test("`Connection: Content-Length` cannot take the framing off a body: the body stays the request's own, nothing is smuggled", async () => {
    const smuggled = "GET /smuggled HTTP/1.1\r\nX-Ignore: ";
    const res = await rawRequest(
      proxy.httpPort,
      `POST /carrier HTTP/1.1\r\nHost: app.test\r\nConnection: Content-Length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    expect(echoOf(res).bodyBytes).toBe(smuggled.length);
    // The pooled connection the body went on carries the next client's request untouched.
    const next = await proxy.fetch("/after-carrier", { host: "app.test" });
    expect(new URL(((await next.json()) as { url: string }).url).pathname).toBe("/after-carrier");
    expect(app.seen.some((s) => s.url.includes("/smuggled"))).toBe(false);
    // Nor can it take the Host away.
    const host = await rawRequest(proxy.httpPort, "GET /host-kept HTTP/1.1\r\nHost: app.test\r\nConnection: Host, close\r\n\r\n");
    expect(echoOf(host).headers.host).toBe("app.test");
  });

  test("a response with both Content-Length and chunked framing reaches the client chunked, its Content-Length removed (RFC 9112 §6.3)", async () => {
    const res = await rawRequest(proxy.httpPort, "GET /both HTTP/1.1\r\nHost: doubleframed.test\r\nConnection: close\r\n\r\n");
    expect(res.status).toBe(200);
    expect(res.headers.find(([name]) => name === "content-length")).toBeUndefined();
    expect(res.headers.find(([name]) => name === "transfer-encoding")?.[1]).toBe("chunked");
    expect(res.body).toContain("hello");
  });

  test("a target that closes its connection after every answer without saying so: every GET still succeeds (resent on a fresh connection)", async () => {
    // Several clients at once, so that requests meet pooled connections the target is closing.
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, async (_, loop) => {
        for (let i = 0; i < 40; i++) {
          const res = await proxy.fetch(`/again?loop=${loop}&i=${i}`, { host: "oneshot.test" });
          await res.arrayBuffer();
          statuses.push(res.status);
        }
      }),
    );
    expect(statuses.length).toBe(320);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
  });

  test("repeated identical Content-Length headers are one length (RFC 9110 §8.6); differing ones are a 400", async () => {
    const same = await rawRequest(proxy.httpPort, "POST /dup-length HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    expect(echoOf(same).bodyBytes).toBe(5);
    const differing = await rawRequest(proxy.httpPort, "POST /dup-length HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!");
    expect(differing.status).toBe(400);
  });

  test("a body the proxy answers without reading (404) is dropped and the connection closes after the answer, instead of stalling", async () => {
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      const size = 1100 * 1024;
      conn.write(requestHead("POST", "/upload", [["Host", "nobody.test"], ["Content-Length", String(size)]]));
      const body = new Uint8Array(size).fill(7);
      let offset = 0;
      while (offset < size && !conn.closed) {
        offset += conn.write(body.subarray(offset));
        if (offset < size) await Bun.sleep(1);
      }
      conn.write(requestHead("GET", "/after", [["Host", "app.test"]]));
      const head = await conn.readHead(5000);
      expect(head.status).toBe(404);
      expect(headerValue(head, "connection")).toBe("close");
      await conn.readBody(head, "POST", 5000);
      expect(await conn.closedWithin(5000)).toBe(true);
    } finally {
      conn.close();
    }
  });

  test("an h2c upgrade request with `Expect: 100-continue` gets its 100 Continue, then its answer", async () => {
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      conn.write(
        requestHead("POST", "/h2c-expect", [
          ["Host", "app.test"],
          ["Connection", "Upgrade, HTTP2-Settings"],
          ["Upgrade", "h2c"],
          ["HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"],
          ["Expect", "100-continue"],
          ["Content-Length", "5"],
        ]),
      );
      expect((await conn.readHead(3000)).status).toBe(100);
      conn.write("hello");
      const head = await conn.readHead(5000);
      expect(head.status).toBe(200);
      const echo = JSON.parse((await conn.readBody(head)).toString()) as { bodyBytes: number };
      expect(echo.bodyBytes).toBe(5);
    } finally {
      conn.close();
    }
  });

  test("an absolute-form target with an empty path is `/` (RFC 9112 §3.2.2)", async () => {
    const res = await rawRequest(proxy.httpPort, "GET http://app.test?empty=path HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    const url = new URL(echoOf(res).url);
    expect(url.pathname + url.search).toBe("/?empty=path");
  });

  test("an absolute-form target is routed by its authority, not by the Host header (RFC 9112 §3.2.2)", async () => {
    const res = await rawRequest(proxy.httpPort, "GET http://app.test/absolute?q=1 HTTP/1.1\r\nHost: elsewhere.test\r\nConnection: close\r\n\r\n");
    const echo = echoOf(res);
    expect(echo.backend).toBe("app");
    expect(echo.headers.host).toBe("app.test");
    expect(new URL(echo.url).pathname + new URL(echo.url).search).toBe("/absolute?q=1");
    const other = await rawRequest(proxy.httpPort, "GET http://elsewhere.test/absolute HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    expect(other.status).toBe(404);
  });
});

test("a client that half-closes an idle keep-alive connection gets a FIN back, not a reset", async () => {
  const outcome = await new Promise<string>((resolve) => {
    const socket = net.connect(proxy.httpPort, "127.0.0.1");
    let received = "";
    socket.on("connect", () => socket.write(requestHead("GET", "/echo", [["Host", "app.test"]])));
    socket.on("data", (data) => {
      received += data.toString("latin1");
      // The whole answer is in: nothing is in flight, and the client is done sending.
      if (received.includes('"backend":"app"')) socket.end();
    });
    socket.on("error", (error: Error & { code?: string }) => resolve(`error ${error.code}`));
    socket.on("end", () => resolve("fin"));
  });
  expect(outcome).toBe("fin");
});
