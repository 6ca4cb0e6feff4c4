// Low-level helpers for end-to-end tests that need more control than fetch
// gives: raw HTTP/1.1 over a TCP socket (to send hop-by-hop headers fetch
// refuses to send, and to see response headers exactly as written), a raw TCP
// "target" that misbehaves (closes or breaks the connection), and a second
// Bun.serve backend with endpoints for big streams, upload probes and
// cancellation probes. Everything binds to 127.0.0.1.
import * as net from "node:net";
import type { Server, TCPSocketListener } from "bun";

export interface RawResponse {
  status: number;
  /** Header lines in the order received, names lower-cased. */
  headers: [string, string][];
  body: string;
  /** The response head exactly as received (status line and header lines). */
  head: string;
  /** Did a whole response arrive (full head, and the full Content-Length or the chunked terminator)? */
  complete: boolean;
  /** Everything received, as latin1 text. */
  raw: string;
}

export function header(res: RawResponse, name: string): string | undefined {
  return res.headers.find(([n]) => n === name.toLowerCase())?.[1];
}

function decodeChunked(bytes: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = bytes.indexOf("\r\n", pos);
    if (eol === -1) break;
    const size = parseInt(bytes.subarray(pos, eol).toString("latin1").split(";")[0]!.trim(), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(bytes.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Parses one HTTP/1.1 response from bytes received up to the close of the connection. */
export function parseResponse(bytes: Buffer): RawResponse {
  const end = bytes.indexOf("\r\n\r\n");
  const raw = bytes.toString("latin1");
  if (end === -1) return { status: 0, headers: [], body: "", head: raw, complete: false, raw };
  const head = bytes.subarray(0, end).toString("latin1");
  const [statusLine, ...lines] = head.split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1]);
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  let rest = bytes.subarray(end + 4);
  const te = headers.find(([n]) => n === "transfer-encoding")?.[1];
  const cl = headers.find(([n]) => n === "content-length")?.[1];
  if (te?.toLowerCase().includes("chunked")) rest = decodeChunked(rest);
  else if (cl !== undefined) rest = rest.subarray(0, Number(cl));
  return { status, headers, body: rest.toString("utf8"), head, complete: complete(bytes), raw };
}

/** Is the response in `bytes` complete (so we need not wait for the close)? */
function complete(bytes: Buffer): boolean {
  const end = bytes.indexOf("\r\n\r\n");
  if (end === -1) return false;
  const head = bytes.subarray(0, end).toString("latin1").toLowerCase();
  const cl = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (cl) return bytes.length - (end + 4) >= Number(cl[1]);
  if (/\r\ntransfer-encoding:[^\r]*chunked/.test(head)) return bytes.subarray(end + 4).includes("0\r\n\r\n");
  return false;
}

/**
 * Sends `request` (a complete raw HTTP/1.1 request, CRLF line endings) to
 * 127.0.0.1:port and resolves with the parsed response once it is complete or
 * the connection closes (status 0 if not even a whole head arrived). Rejects
 * after `timeoutMs`.
 */
export function rawRequest(port: number, request: string | Uint8Array, timeoutMs = 10_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (socket?: { end(): void }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.end();
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (error) {
        reject(error);
      }
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      reject(new Error(`raw request timed out; received: ${JSON.stringify(Buffer.concat(chunks).toString("latin1").slice(0, 300))}`));
    }, timeoutMs);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(socket) {
          socket.write(request);
        },
        data(socket, data) {
          chunks.push(Buffer.from(data));
          if (complete(Buffer.concat(chunks))) finish(socket);
        },
        close() {
          finish();
        },
        error(_socket, error) {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(error);
        },
      },
    }).catch((error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Builds a raw request: `GET path HTTP/1.1`, the given header lines, `Connection: close` unless one is given. */
export function buildRequest(method: string, target: string, headers: [string, string][], body = ""): string {
  const lines = [`${method} ${target} HTTP/1.1`, ...headers.map(([n, v]) => `${n}: ${v}`)];
  if (!headers.some(([n]) => n.toLowerCase() === "connection")) lines.push("Connection: close");
  if (body && !headers.some(([n]) => n.toLowerCase() === "content-length")) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return lines.join("\r\n") + "\r\n\r\n" + body;
}

// ------------------------------------------------------------------ raw target

export type RawBehaviour =
  /** Answer 200 with the raw request head the target received as the body. */
  | "echo-head"
  /** Close the connection as soon as request bytes arrive, without answering. */
  | "close"
  /** Write the start of a response (an incomplete head) and then close. */
  | "partial-head"
  /** Send a complete head announcing 100000 bytes, 10 of them, then close. */
  | "truncated-body"
  /** Answer 200 "hop" with every kind of hop-by-hop response header. */
  | "hop-headers"
  /** Answer 200 with both `Content-Length: 100` and a chunked body "hello" (RFC 9112 §6.3: chunked wins). */
  | "length-and-chunked"
  /** Answer 200 "ok" (Content-Length, no `Connection: close`), then close the connection anyway. */
  | "close-after-answer";

export interface RawTarget {
  port: number;
  address: string;
  /** Raw request heads received, newest last. */
  heads: string[];
  connections: number;
  behaviour: RawBehaviour;
  stop(): void;
}

/** A TCP server speaking just enough HTTP/1.1 to misbehave in a controlled way. */
export function startRawTarget(behaviour: RawBehaviour): RawTarget {
  const target: RawTarget = {
    port: 0,
    address: "",
    heads: [],
    connections: 0,
    behaviour,
    stop: () => listener.stop(true),
  };
  const buffers = new WeakMap<object, Buffer>();
  const listener: TCPSocketListener<undefined> = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        target.connections++;
        buffers.set(socket, Buffer.alloc(0));
      },
      data(socket, data) {
        const buffered = Buffer.concat([buffers.get(socket) ?? Buffer.alloc(0), Buffer.from(data)]);
        buffers.set(socket, buffered);
        if (target.behaviour === "close") {
          socket.terminate();
          return;
        }
        const end = buffered.indexOf("\r\n\r\n");
        if (end === -1) return;
        const head = buffered.subarray(0, end).toString("latin1");
        buffers.set(socket, buffered.subarray(end + 4));
        target.heads.push(head);
        if (target.behaviour === "partial-head") {
          socket.write("HTTP/1.1 200 OK\r\nContent-Ty");
          socket.end();
        } else if (target.behaviour === "truncated-body") {
          socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n0123456789");
          socket.end();
        } else if (target.behaviour === "length-and-chunked") {
          socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
        } else if (target.behaviour === "close-after-answer") {
          socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
          socket.end();
        } else if (target.behaviour === "hop-headers") {
          socket.write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n" +
              "Connection: keep-alive, X-Private, X-Secret-Two\r\nX-Private: secret\r\nX-Secret-Two: two\r\n" +
              "Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\n" +
              "Trailer: X-Checksum\r\nX-Kept: kept\r\n\r\nhop",
          );
        } else {
          const body = Buffer.from(head, "latin1");
          socket.write(
            `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
          );
          socket.write(body);
          socket.end();
        }
      },
    },
  });
  target.port = listener.port;
  target.address = `127.0.0.1:${listener.port}`;
  return target;
}

/** Header lines of a raw request head (after the request line), names lower-cased. */
export function headLines(head: string): [string, string][] {
  return head
    .split("\r\n")
    .slice(1)
    .map((line): [string, string] => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
    });
}

// ------------------------------------------------------------ stall target

export interface StallTarget {
  port: number;
  address: string;
  /** Bytes read before the target stopped reading (it reads one chunk per connection). */
  received: number;
  connections: number;
  /** Connections the other side (the proxy) has closed. */
  closed: number;
  stop(): Promise<void>;
}

/**
 * A TCP target that reads the first chunk of each connection and then stops
 * reading for good (never answers): the kernel buffers fill up and the sender
 * is pushed back. Records when the peer closes the connection.
 */
export async function startStallTarget(): Promise<StallTarget> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    target.connections++;
    socket.once("data", (data) => {
      target.received += data.length;
      socket.pause();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      sockets.delete(socket);
      target.closed++;
    });
  });
  const target: StallTarget = {
    port: 0,
    address: "",
    received: 0,
    connections: 0,
    closed: 0,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  target.port = (server.address() as net.AddressInfo).port;
  target.address = `127.0.0.1:${target.port}`;
  return target;
}

// ------------------------------------------------------------ probe backend

/** The byte at offset i of a /big body: a repeating pattern the client can verify. */
export const bigByte = (i: number) => i % 251;

export interface ProbeBackend {
  port: number;
  address: string;
  server: Server<unknown>;
  /** /hang requests whose request signal fired (the proxy cancelled them), with when it happened. */
  cancelled: { id: string; at: number }[];
  /** /hang requests currently waiting. */
  hanging: Set<string>;
  /** /big responses whose stream was cancelled before the end (the reader went away). */
  bigCancelled: number;
  /** /big responses currently being streamed. */
  bigActive: number;
  /** Bytes handed to the server by all /big streams so far. */
  bigSent: number;
  /** Resolves when the /upload-probe request with this id has received its first body bytes. */
  firstUploadBytes(id: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A Bun.serve backend with endpoints that the standard test backend lacks:
 *   /up                    200 (health check)
 *   /big?n=N               N bytes streamed in 1 MiB chunks, pull-based (never buffered whole)
 *   /hang?id=X             never answers; records when the request is cancelled
 *   /upload-probe?id=X     reads the body, signals its first bytes, answers {bodyBytes}
 */
export function startProbeBackend(): ProbeBackend {
  const firstBytes = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  const waiter = (id: string) => {
    let entry = firstBytes.get(id);
    if (!entry) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      entry = { promise, resolve };
      firstBytes.set(id, entry);
    }
    return entry;
  };
  const probe: ProbeBackend = {
    port: 0,
    address: "",
    server: undefined as unknown as Server<unknown>,
    cancelled: [],
    hanging: new Set(),
    bigCancelled: 0,
    bigActive: 0,
    bigSent: 0,
    firstUploadBytes: (id) => waiter(id).promise,
    async stop() {
      await probe.server.stop(true);
    },
  };
  probe.server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    idleTimeout: 0,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/up") return new Response("ok");
      if (url.pathname === "/big") {
        const total = Number(url.searchParams.get("n") ?? 0);
        const CHUNK = 1 << 20;
        // One pre-computed window of the pattern, sliced at the right phase.
        const window = new Uint8Array(CHUNK + 251);
        for (let i = 0; i < window.length; i++) window[i] = bigByte(i);
        let sent = 0;
        let active = true;
        probe.bigActive++;
        const done = () => {
          if (active) probe.bigActive--;
          active = false;
        };
        const stream = new ReadableStream<Uint8Array>(
          {
            pull(controller) {
              if (sent >= total) {
                done();
                return controller.close();
              }
              const n = Math.min(CHUNK, total - sent);
              const phase = sent % 251;
              controller.enqueue(window.slice(phase, phase + n));
              sent += n;
              probe.bigSent += n;
            },
            cancel() {
              probe.bigCancelled++;
              done();
            },
          },
          { highWaterMark: 2 },
        );
        return new Response(stream, { headers: { "content-type": "application/octet-stream" } });
      }
      if (url.pathname === "/hang") {
        const id = url.searchParams.get("id") ?? "";
        probe.hanging.add(id);
        return new Promise<Response>((resolve) => {
          req.signal.addEventListener("abort", () => {
            probe.hanging.delete(id);
            probe.cancelled.push({ id, at: Date.now() });
            resolve(new Response("cancelled"));
          });
        });
      }
      if (url.pathname === "/upload-probe") {
        const id = url.searchParams.get("id") ?? "";
        let bodyBytes = 0;
        if (req.body) {
          for await (const chunk of req.body) {
            if (bodyBytes === 0 && chunk.byteLength > 0) waiter(id).resolve();
            bodyBytes += chunk.byteLength;
          }
        }
        return Response.json({ bodyBytes });
      }
      return new Response("not found", { status: 404 });
    },
  });
  probe.port = probe.server.port!;
  probe.address = `127.0.0.1:${probe.port}`;
  return probe;
}

// ------------------------------------------------------------------- misc

/** Polls `check` every `intervalMs` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = "condition", intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await Bun.sleep(intervalMs);
  }
}

/**
 * Polls `read` until its value has not changed for `quietMs`, and returns that
 * value. Fails if it keeps changing past the deadline.
 */
export async function waitForStable(read: () => number, quietMs = 500, timeoutMs = 10_000, what = "value"): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let value = read();
  let since = Date.now();
  for (;;) {
    await Bun.sleep(50);
    const now = read();
    if (now !== value) {
      value = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return value;
    }
    if (Date.now() > deadline) throw new Error(`${what} still changing after ${timeoutMs}ms (now ${value})`);
  }
}

/** A request body of `total` bytes generated on the fly, in chunks of `chunk` bytes. */
export function generatedBody(total: number, chunk = 1 << 20): ReadableStream<Uint8Array> {
  const block = new Uint8Array(chunk).fill(0x61);
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(chunk, total - sent);
      controller.enqueue(n === chunk ? block.slice() : block.slice(0, n));
      sent += n;
    },
  });
}

/** Peak resident set size (VmHWM) of Linux processes (a server and its workers), summed, in bytes; undefined where /proc is unavailable. */
export async function peakRss(pids: number[]): Promise<number | undefined> {
  let total = 0;
  for (const pid of pids) {
    try {
      const status = await Bun.file(`/proc/${pid}/status`).text();
      const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
      if (!kb) return undefined;
      total += Number(kb) * 1024;
    } catch {
      return undefined;
    }
  }
  return total;
}
