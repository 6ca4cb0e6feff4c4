// Bodies (README "Forwarding"), end to end: a 1 GiB download to a slow reader and a 1 GiB
// upload to a slow app stream through with flat proxy memory; Content-Length
// (the app's, also on streamed bodies),
// Set-Cookie, Expect: 100-continue, HEAD, 204 and 304 as seen on the wire.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { RawConnection, headerValue, headerValues, rawExchange, requestHead, throttledDownload } from "./support/raw-client.ts";
import { MB, RssSampler, mb, until } from "./support/rss.ts";
import { patternBody, pattern, startRawBigBackend, startStreamBackend, type RawBigBackend, type StreamBackend } from "./support/stream-backend.ts";
import { Proxy } from "./support/proxy.ts";

const GiB = 1024 * 1024 * 1024;

let proxy: Proxy;
let app: StreamBackend;
let big: RawBigBackend; // raw TCP app that sends an exact Content-Length for /big

async function deploy(service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}`);
}

function get(path: string, host: string, extra: [string, string][] = []): string {
  return requestHead("GET", path, [["Host", host], ...extra, ["Connection", "close"]]);
}

function isPattern(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== pattern(i)) return false;
  return true;
}

beforeAll(async () => {
  app = startStreamBackend();
  big = startRawBigBackend();
  proxy = await Proxy.start();
  await deploy("app", ["--target", app.address, "--host", "app.test"]);
  await deploy("big", ["--target", big.address, "--host", "big.test"]);
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  await app?.stop();
  big?.stop();
});

describe("large bodies stream with flat memory", () => {
  test(
    "a 1 GiB download read at ~50 MB/s arrives complete while proxy RSS grows < 64 MB",
    async () => {
      // warm-up, so the baseline includes the relay path
      await rawExchange(proxy.httpPort, get(`/big?n=${4 * MB}`, "big.test"));
      const rss = new RssSampler(() => proxy.processIds(), 100);
      const result = await throttledDownload(proxy.httpPort, get(`/big?n=${GiB}`, "big.test"), 50 * 1000 * 1000, 60_000);
      const report = rss.stop();
      console.log(
        `1 GiB download at ~50 MB/s: ${result.seconds.toFixed(1)} s (${(result.bodyBytes / 1e6 / result.seconds).toFixed(1)} MB/s); ` +
          `proxy RSS ${mb(report.baseline)} -> peak ${mb(report.peak)} (growth ${mb(report.growth)}, ${report.samples} samples)`,
      );
      expect(result.head.status).toBe(200);
      // The app's length reaches the client (downloads show their size).
      expect(headerValue(result.head, "content-length")).toBe(String(GiB));
      expect(headerValue(result.head, "transfer-encoding")).toBeUndefined();
      expect(result.bodyBytes).toBe(GiB);
      expect(result.complete).toBe(true);
      expect(result.patternOk).toBe(true);
      // It really was read slowly, so the proxy had to hold the app back.
      expect(result.seconds).toBeGreaterThan(15);
      expect(report.growth).toBeLessThan(64 * MB);
    },
    90_000,
  );

  test(
    "a 1 GiB upload, generated on the fly, reaches an app that reads at ~128 MiB/s while proxy RSS grows < 64 MB",
    async () => {
      const rss = new RssSampler(() => proxy.processIds(), 100);
      const started = performance.now();
      const res = await proxy.fetch(`/upload?rate=${128 * MB}`, { method: "POST", host: "app.test", body: patternBody(GiB) });
      const seen = (await res.json()) as { bytes: number; patternOk: boolean };
      const seconds = (performance.now() - started) / 1000;
      const report = rss.stop();
      console.log(
        `1 GiB upload: ${seconds.toFixed(1)} s; proxy RSS ${mb(report.baseline)} -> peak ${mb(report.peak)} (growth ${mb(report.growth)}, ${report.samples} samples)`,
      );
      expect(res.status).toBe(200);
      expect(seen.bytes).toBe(GiB);
      expect(seen.patternOk).toBe(true);
      expect(report.growth).toBeLessThan(64 * MB);
    },
    90_000,
  );
});

describe("Content-Length", () => {
  test("streamed downloads keep the app's Content-Length and framing: two on one keep-alive connection", async () => {
    const n = 3 * MB + 5;
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      for (let round = 0; round < 2; round++) {
        conn.write(requestHead("GET", `/big?n=${n}`, [["Host", "big.test"]]));
        const head = await conn.readHead();
        expect(head.status).toBe(200);
        expect(headerValue(head, "content-length")).toBe(String(n));
        expect(headerValue(head, "transfer-encoding")).toBeUndefined();
        const body = await conn.readBody(head);
        expect(body.length).toBe(n);
        expect(isPattern(body)).toBe(true);
      }
    } finally {
      conn.close();
    }
  });

  test("an app that dies mid-download: the client sees the connection cut short, never a complete body", async () => {
    const n = 4 * MB;
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      conn.write(get(`/big?n=${n}&cut=${MB}`, "big.test"));
      const head = await conn.readHead();
      expect(headerValue(head, "content-length")).toBe(String(n));
      expect(await conn.closedWithin(10_000)).toBe(true);
      expect(conn.pending).toBeLessThan(n);
    } finally {
      conn.close();
    }
    const line = await proxy.waitForLog((l) => l.msg === "Request" && l.path === "/big" && l.query === `n=${n}&cut=${MB}`);
    expect(line.error).toBeDefined();
  });

  test("small bodies (up to 64 KiB) keep an exact Content-Length", async () => {
    for (const n of [1000, 64 * 1024]) {
      const { head, body, extra } = await rawExchange(proxy.httpPort, get(`/bytes?n=${n}`, "app.test"));
      expect(head.status).toBe(200);
      expect(headerValue(head, "content-length")).toBe(String(n));
      expect(headerValue(head, "transfer-encoding")).toBeUndefined();
      expect(body.length).toBe(n);
      expect(isPattern(body)).toBe(true);
      expect(extra).toBe(0);
    }
  });

  test("a streamed body of unknown length arrives whole (chunked)", async () => {
    const n = 3 * MB + 17;
    const { head, body } = await rawExchange(proxy.httpPort, get(`/stream?n=${n}`, "app.test"));
    expect(head.status).toBe(200);
    expect(body.length).toBe(n);
    expect(isPattern(body)).toBe(true);
  });
});

describe("headers and bodyless responses", () => {
  test("a streamed response's head reaches the client before its first body byte (an event stream opens at once)", async () => {
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      const sent = performance.now();
      conn.write(get("/late?ms=2500", "big.test"));
      const head = await conn.readHead(10_000);
      const headAt = performance.now() - sent;
      expect(head.status).toBe(200);
      expect(headerValue(head, "content-type")).toBe("text/event-stream");
      expect(headAt).toBeLessThan(1500);
      const body = (await conn.readBody(head, "GET", 10_000)).toString();
      expect(body).toBe("data: late\n\n");
      expect(performance.now() - sent).toBeGreaterThan(2000);
    } finally {
      conn.close();
    }
  });

  test("20 Set-Cookie headers stay separate lines, each intact (commas in Expires included)", async () => {
    const { head } = await rawExchange(proxy.httpPort, get("/cookies?n=20", "app.test"));
    const cookies = headerValues(head, "set-cookie");
    expect(cookies).toEqual(Array.from({ length: 20 }, (_, i) => `c${i}=v${i}; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT; HttpOnly`));
    const res = await proxy.fetch("/cookies?n=20", { host: "app.test" });
    await res.text();
    expect(res.headers.getSetCookie()).toHaveLength(20);
  });

  test("an upload with `Expect: 100-continue` gets 100 Continue, then its body is forwarded whole", async () => {
    const size = 2 * MB;
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      conn.write(
        requestHead("POST", "/upload", [
          ["Host", "app.test"],
          ["Content-Type", "application/octet-stream"],
          ["Content-Length", String(size)],
          ["Expect", "100-continue"],
          ["Connection", "close"],
        ]),
      );
      const interim = await conn.readHead(5000);
      expect(interim.status).toBe(100);
      const body = new Uint8Array(size);
      for (let i = 0; i < size; i++) body[i] = pattern(i);
      let offset = 0;
      while (offset < size) {
        const wrote = conn.write(body.subarray(offset));
        offset += wrote;
        if (offset < size) await Bun.sleep(2);
      }
      const head = await conn.readHead(10_000);
      expect(head.status).toBe(200);
      const seen = JSON.parse((await conn.readBody(head)).toString()) as { bytes: number; patternOk: boolean };
      expect(seen.bytes).toBe(size);
      expect(seen.patternOk).toBe(true);
    } finally {
      conn.close();
    }
  });

  test("HEAD, 204 and 304 responses carry no body: the next response on the same connection is intact", async () => {
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      const ask = async (method: string, path: string, extra: [string, string][] = []) => {
        conn.write(requestHead(method, path, [["Host", "app.test"], ...extra]));
        const head = await conn.readHead();
        const body = await conn.readBody(head, method);
        return { head, body };
      };
      const head1 = await ask("HEAD", "/bytes?n=5000");
      expect(head1.head.status).toBe(200);
      expect(headerValue(head1.head, "content-length")).toBe("5000");

      const head2 = await ask("HEAD", `/stream?n=${2 * MB}`);
      expect(head2.head.status).toBe(200);

      const noContent = await ask("GET", "/empty?status=204");
      expect(noContent.head.status).toBe(204);
      expect(headerValue(noContent.head, "transfer-encoding")).toBeUndefined();
      expect(["0", undefined]).toContain(headerValue(noContent.head, "content-length"));

      const notModified = await ask("GET", "/empty?status=304", [["If-None-Match", '"v1"']]);
      expect(notModified.head.status).toBe(304);
      expect(headerValue(notModified.head, "etag")).toBe('"v1"');
      expect(headerValue(notModified.head, "transfer-encoding")).toBeUndefined();

      // If any of those had sent body bytes, they would now sit in front of this response.
      const after = await ask("GET", "/bytes?n=10", [["Connection", "close"]]);
      expect(after.head.raw.startsWith("HTTP/1.1 200")).toBe(true);
      expect([...after.body]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      // The proxy closes the connection after that answer: nothing followed it.
      expect(await conn.closedWithin(10_000)).toBe(true);
      expect(conn.pending).toBe(0);
    } finally {
      conn.close();
    }
  });

  test("a HEAD response never announces a Content-Length other than the GET body's length (RFC 9110 §8.6)", async () => {
    // The app streams this body (chunked), so it announces no length for HEAD either.
    const n = 2 * MB;
    const direct = await rawExchange(app.port, requestHead("HEAD", `/stream?n=${n}`, [["Host", "app.test"], ["Connection", "close"]]), "HEAD");
    expect(headerValue(direct.head, "content-length")).toBeUndefined();
    const { head, body } = await rawExchange(proxy.httpPort, requestHead("HEAD", `/stream?n=${n}`, [["Host", "app.test"], ["Connection", "close"]]), "HEAD");
    expect(head.status).toBe(200);
    expect(body.length).toBe(0);
    // Absent, or the real length; never a made-up `0`.
    expect([undefined, String(n)]).toContain(headerValue(head, "content-length"));
  });
});
