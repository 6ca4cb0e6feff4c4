// The buffering flags (README "parachute deploy SERVICE"), end to end: --buffer-requests / --buffer-responses
// read bodies fully before forwarding, in memory up to --buffer-memory and in a
// parachute-buffer-* temp file beyond; --max-request-body (413, also straight
// from Content-Length without buffering) and --max-response-body (502);
// event streams are never buffered.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { RawConnection, headerValue, requestHead } from "./support/raw-client.ts";
import { MB, until } from "./support/rss.ts";
import { pattern, patternBody, startStreamBackend, type StreamBackend } from "./support/stream-backend.ts";
import { Proxy } from "./support/proxy.ts";

let proxy: Proxy;
let app: StreamBackend;

async function deploy(service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}`);
}

/**
 * This proxy's spill files (parachute-buffer-*) in the temp dir, with their
 * sizes: those named with its pid, and any it holds open (other suites' proxies
 * may spill into the same directory at the same time).
 */
function spillFiles(): { name: string; size: number }[] {
  const dir = os.tmpdir();
  const open = new Set<string>();
  const pids = proxy.processIds();
  for (const pid of pids) {
    try {
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        try {
          open.add(path.basename(fs.readlinkSync(`/proc/${pid}/fd/${fd}`)));
        } catch {}
      }
    } catch {}
  }
  return fs
    .readdirSync(dir)
    .filter((name) => name.startsWith("parachute-buffer-") && (pids.some((pid) => name.includes(`-${pid}-`)) || open.has(name)))
    .flatMap((name) => {
      try {
        return [{ name, size: fs.statSync(path.join(dir, name)).size }];
      } catch {
        return []; // removed in between
      }
    });
}

/** Has this file gone from the temp dir? */
function removed(name: string): boolean {
  return !fs.existsSync(path.join(os.tmpdir(), name));
}

function isPattern(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== pattern(i)) return false;
  return true;
}

beforeAll(async () => {
  app = startStreamBackend();
  proxy = await Proxy.start();
  await Promise.all([
    deploy("limited", [
      "--target", app.address, "--host", "limited.test",
      "--buffer-requests", "--buffer-responses", "--buffer-memory", "64k",
      "--max-request-body", "1m", "--max-response-body", "1m",
    ]),
    deploy("spill", ["--target", app.address, "--host", "spill.test", "--buffer-requests", "--buffer-responses", "--buffer-memory", "64k"]),
    deploy("unbuffered", ["--target", app.address, "--host", "unbuffered.test", "--max-request-body", "1m"]),
  ]);
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  await app?.stop();
});

/**
 * Sends `bytes` of chunked body in 64 KiB chunks, then the last chunk. It
 * stops early once the proxy has answered or closed: it may refuse the body
 * before it has all of it.
 */
async function sendChunkedBody(conn: RawConnection, bytes: number) {
  const chunk = new Uint8Array(64 * 1024).fill(7);
  const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), Buffer.from(chunk), Buffer.from("\r\n")]);
  const refused = () => conn.closed || conn.pending > 0;
  for (let sent = 0; sent < bytes && !refused(); sent += chunk.length) {
    let offset = 0;
    while (offset < frame.length && !refused()) {
      offset += conn.write(frame.subarray(offset));
      if (offset < frame.length) await Bun.sleep(1);
    }
  }
  if (!refused()) conn.write("0\r\n\r\n");
}

describe("request limits", () => {
  test("a buffered request body under --max-request-body reaches the app whole, with its exact Content-Length", async () => {
    const n = 900_000;
    // Sent chunked (a stream of unknown length): the proxy reads it all, then forwards it with a length.
    const res = await proxy.fetch("/upload", { method: "POST", host: "limited.test", body: patternBody(n) });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { bytes: number; patternOk: boolean; headers: Record<string, string> };
    expect(seen.bytes).toBe(n);
    expect(seen.patternOk).toBe(true);
    expect(seen.headers["content-length"]).toBe(String(n));
    expect(seen.headers["transfer-encoding"]).toBeUndefined();
  });

  test("a streamed request body over --max-request-body is refused with 413 (HTML) and never reaches the app", async () => {
    const uploadsBefore = app.uploads.length;
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      conn.write(
        requestHead("POST", "/upload", [
          ["Host", "limited.test"],
          ["Transfer-Encoding", "chunked"],
          ["Connection", "close"],
        ]),
      );
      await sendChunkedBody(conn, 2 * MB);
      const head = await conn.readHead();
      expect(head.status).toBe(413);
      expect(headerValue(head, "content-type")).toContain("text/html");
      expect((await conn.readBody(head)).toString()).toContain("413");
    } finally {
      conn.close();
    }
    expect(app.uploads.length).toBe(uploadsBefore);
    const logged = await proxy.waitForLog((l) => l.msg === "Request" && l.service === "limited" && l.status === 413);
    expect(logged.path).toBe("/upload");
  });

  test("without buffering, a chunked upload is stopped with 413 where it passes --max-request-body; the app never gets a whole body", async () => {
    const uploadsBefore = app.uploads.length;
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      conn.write(requestHead("POST", "/upload", [["Host", "unbuffered.test"], ["Transfer-Encoding", "chunked"], ["Connection", "close"]]));
      await sendChunkedBody(conn, 2 * MB);
      const head = await conn.readHead();
      expect(head.status).toBe(413);
    } finally {
      conn.close();
    }
    expect(app.uploads.length).toBe(uploadsBefore);
  });

  test("a declared Content-Length over --max-request-body is refused with 413 before the body is sent, with or without buffering", async () => {
    for (const host of ["limited.test", "unbuffered.test"]) {
      const requestsBefore = app.requests;
      const conn = await RawConnection.open(proxy.httpPort);
      try {
        // Only the head: a 413 that waited for the body would never come.
        conn.write(
          requestHead("POST", "/upload", [
            ["Host", host],
            ["Content-Type", "application/octet-stream"],
            ["Content-Length", String(2 * MB)],
          ]),
        );
        const head = await conn.readHead(5000);
        expect(head.status).toBe(413);
        expect(headerValue(head, "content-type")).toContain("text/html");
      } finally {
        conn.close();
      }
      expect(app.requests).toBe(requestsBefore);
    }
  });

  test("without buffering, a body within --max-request-body still streams through", async () => {
    const n = 500_000;
    const body = new Uint8Array(n);
    for (let i = 0; i < n; i++) body[i] = pattern(i);
    const res = await proxy.fetch("/upload", { method: "POST", host: "unbuffered.test", body });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { bytes: number; patternOk: boolean };
    expect(seen).toMatchObject({ bytes: n, patternOk: true });
  });
});

describe("response limits", () => {
  test("a response over --max-response-body becomes a 502 (HTML), streamed or with a length", async () => {
    for (const p of [`/stream?n=${2 * MB}`, `/bytes?n=${2 * MB}`]) {
      const res = await proxy.fetch(p, { host: "limited.test" });
      expect(res.status).toBe(502);
      expect(res.headers.get("content-type")).toContain("text/html");
      const text = await res.text();
      expect(text).toContain("502");
      expect(text.length).toBeLessThan(100_000);
    }
  });

  test("a buffered response within --max-response-body arrives intact", async () => {
    const n = 1_000_000;
    const res = await proxy.fetch(`/stream?n=${n}`, { host: "limited.test" });
    expect(res.status).toBe(200);
    const body = new Uint8Array(await res.arrayBuffer());
    expect(body.length).toBe(n);
    expect(isPattern(body)).toBe(true);
  });

  test("--buffer-responses really buffers: a slow plain-text response reaches the client only once it is complete", async () => {
    const start = performance.now();
    const res = await proxy.fetch("/chunks?n=3&interval=400&type=text/plain", { host: "limited.test" });
    const headersAt = performance.now() - start;
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toBe("chunk 0\nchunk 1\nchunk 2\n");
    // Nothing (not even the head) before the app had produced all three pieces (~1.2 s).
    expect(headersAt).toBeGreaterThan(1000);
  });

  test("event streams are never buffered: with --buffer-responses events still arrive one by one", async () => {
    const start = performance.now();
    const res = await proxy.fetch("/sse?events=4&interval=400", { host: "limited.test" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const arrivals: number[] = [];
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of res.body!) {
      text += decoder.decode(chunk, { stream: true });
      const count = (text.match(/data: event \d+\n\n/g) ?? []).length;
      while (arrivals.length < count) arrivals.push(performance.now() - start);
    }
    expect(arrivals).toHaveLength(4);
    expect(arrivals[0]!).toBeLessThan(1000);
    // spread over the ~1.6 s the app took, not delivered together at the end
    expect(arrivals[3]! - arrivals[0]!).toBeGreaterThan(900);
  });
});

describe("spilling to disk past --buffer-memory", () => {
  test(
    "a buffered upload over --buffer-memory is held in a parachute-buffer-* temp file while in flight, which is removed afterwards",
    async () => {
      expect(spillFiles()).toEqual([]);
      const total = 8 * MB;
      const first = 1 * MB;
      let sent = 0;
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const source = patternBody(total);
      const reader = source.getReader();
      // The client sends 1 MB, then holds the rest back until the spill file has been seen.
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent >= first) await released;
          const { value, done } = await reader.read();
          if (done) return controller.close();
          sent += value.byteLength;
          controller.enqueue(value);
        },
      });
      const requestsBefore = app.requests;
      const response = proxy.fetch("/upload", { method: "POST", host: "spill.test", body });
      let spilled: { name: string; size: number };
      try {
        spilled = await until("a spill file holding the first 1 MB", () => spillFiles().find((f) => f.size >= 512 * 1024), 10_000);
        expect(spilled.name).toStartWith("parachute-buffer-");
        // Buffering: the app has not even been contacted while the body is still arriving.
        expect(app.requests).toBe(requestsBefore);
      } finally {
        release();
      }
      const res = await response;
      expect(res.status).toBe(200);
      const seen = (await res.json()) as { bytes: number; patternOk: boolean; headers: Record<string, string> };
      expect(seen.bytes).toBe(total);
      expect(seen.patternOk).toBe(true);
      expect(seen.headers["content-length"]).toBe(String(total));
      await until("the spill file to be removed", () => removed(spilled.name) && spillFiles().length === 0, 5000);
    },
    30_000,
  );

  test(
    "a buffered response over --buffer-memory is spilled to a temp file and streamed from it to a slow client; the file is removed afterwards",
    async () => {
      const n = 32 * MB;
      const conn = await RawConnection.open(proxy.httpPort);
      let spilled: { name: string; size: number };
      try {
        conn.write(requestHead("GET", `/stream?n=${n}`, [["Host", "spill.test"], ["Connection", "close"]]));
        const head = await conn.readHead(10_000);
        conn.pause(); // a slow client: read nothing more for now
        expect(head.status).toBe(200);
        spilled = await until("the response's spill file", () => spillFiles().find((f) => f.size === n), 5000);
        expect(spilled.name).toStartWith("parachute-buffer-");
        conn.resume();
        const body = await conn.readBody(head, "GET", 20_000);
        expect(body.length).toBe(n);
        expect(isPattern(body)).toBe(true);
      } finally {
        conn.close();
      }
      await until("the spill file to be removed", () => removed(spilled.name) && spillFiles().length === 0, 5000);
    },
    30_000,
  );

  test("a client that gives up during a buffered upload leaves no spill file behind, and the app is never contacted", async () => {
    const requestsBefore = app.requests;
    const source = patternBody(16 * MB);
    const reader = source.getReader();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent >= 2 * MB) return new Promise<void>(() => {}); // stall: the client never finishes
        const { value, done } = await reader.read();
        if (done) return controller.close();
        sent += value.byteLength;
        controller.enqueue(value);
      },
    });
    const abort = new AbortController();
    const response = proxy.fetch("/upload", { method: "POST", host: "spill.test", body, signal: abort.signal }).catch((e: Error) => e);
    const spilled = await until("a spill file for the stalled upload", () => spillFiles().find((f) => f.size >= 1 * MB), 10_000);
    abort.abort();
    expect(await response).toBeInstanceOf(Error);
    await until("the spill file to be removed after the client left", () => removed(spilled.name) && spillFiles().length === 0, 5000);
    expect(app.requests).toBe(requestsBefore);
  });

  test("a client that goes away while a spilled response is streamed to it leaves no spill file behind", async () => {
    const n = 32 * MB;
    const conn = await RawConnection.open(proxy.httpPort);
    let spilled: { name: string; size: number };
    try {
      conn.write(requestHead("GET", `/stream?n=${n}`, [["Host", "spill.test"], ["Connection", "close"]]));
      const head = await conn.readHead(10_000);
      conn.pause();
      expect(head.status).toBe(200);
      spilled = await until("the response's spill file", () => spillFiles().find((f) => f.size === n), 5000);
    } finally {
      conn.close();
    }
    await until("the spill file to be removed after the client left", () => removed(spilled.name) && spillFiles().length === 0, 5000);
  });
});

test("with --buffer-requests, --target-timeout counts from when the target is asked, not while the client is still uploading", async () => {
  await deploy("slow-upload", ["--target", app.address, "--host", "slow-upload.test", "--buffer-requests", "--target-timeout", "1s"]);
  const requestsBefore = app.requests;
  // The client needs ~2 s to send its body; the app answers at once when it gets it.
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i >= 4) return controller.close();
      await Bun.sleep(500);
      i++;
      controller.enqueue(new Uint8Array(1000));
    },
  });
  const res = await proxy.fetch("/upload", { method: "POST", host: "slow-upload.test", body });
  const text = await res.text();
  expect(res.status, text.slice(0, 300)).toBe(200);
  expect(JSON.parse(text).bytes).toBe(4000);
  expect(app.requests).toBe(requestsBefore + 1);
}, 15_000);

describe("run --max-request-body: the limit of every service that sets none", () => {
  let limited: Proxy;

  beforeAll(async () => {
    // Two workers: the limit reaches every data plane, not only the control plane's.
    limited = await Proxy.start({ args: ["--max-request-body", "100k", "--workers", "2"] });
    for (const [service, extra] of [["inherits", []], ["own", ["--max-request-body", "1m"]]] as const) {
      const result = await limited.cli(["deploy", service, "--target", app.address, "--host", `${service}.test`, ...extra]);
      if (result.code !== 0) throw new Error(`deploy ${service} failed:\n${result.stderr}`);
    }
  }, 30_000);

  afterAll(async () => {
    await limited?.stop();
  });

  const upload = (host: string, bytes: number) => limited.fetch("/upload", { method: "POST", host, body: new Uint8Array(bytes) });

  test("a service deployed without --max-request-body gets the run limit (413 above it), in a worker too", async () => {
    const requestsBefore = app.requests;
    for (let i = 0; i < 4; i++) expect((await upload("inherits.test", 200_000)).status).toBe(413);
    expect(app.requests).toBe(requestsBefore);
    expect((await upload("inherits.test", 50_000)).status).toBe(200);
  });

  test("a service's own --max-request-body wins over the run limit", async () => {
    expect((await upload("own.test", 500_000)).status).toBe(200);
    expect((await upload("own.test", 2 * MB)).status).toBe(413);
  });
});

