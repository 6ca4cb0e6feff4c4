// Raw HTTP/1.1 clients over Bun.connect, for what fetch hides or cannot do:
// the exact response head on the wire, interim 100 responses, several
// requests on one connection, a download read at a fixed rate (the socket is
// paused between reads, so the sender sees real TCP backpressure), and many
// cheap long-lived event-stream clients that do not count against fetch's
// per-process cap. Everything connects to 127.0.0.1.
import type { Socket } from "bun";

export interface Head {
  status: number;
  /** Header lines in order, names lower-cased. */
  headers: [string, string][];
  raw: string;
}

export function headerValues(head: Head, name: string): string[] {
  const n = name.toLowerCase();
  return head.headers.filter(([k]) => k === n).map(([, v]) => v);
}

export function headerValue(head: Head, name: string): string | undefined {
  return headerValues(head, name)[0];
}

export function parseHead(raw: string): Head {
  const [statusLine, ...lines] = raw.split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "")?.[1] ?? 0);
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
  });
  return { status, headers, raw };
}

/** Builds a request head (CRLF, blank line included). */
export function requestHead(method: string, target: string, headers: [string, string][]): string {
  return [`${method} ${target} HTTP/1.1`, ...headers.map(([n, v]) => `${n}: ${v}`)].join("\r\n") + "\r\n\r\n";
}

/**
 * One client connection that can carry several requests in turn. Incoming
 * bytes are buffered; `readHead` and `readBody` consume them.
 */
export class RawConnection {
  private buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  private socket!: Socket<undefined>;

  static async open(port: number): Promise<RawConnection> {
    const conn = new RawConnection();
    conn.socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        data(_s, data) {
          conn.buffer = conn.buffer.length ? Buffer.concat([conn.buffer, Buffer.from(data)]) : Buffer.from(data);
          conn.wake();
        },
        close() {
          conn.closed = true;
          conn.wake();
        },
        error() {
          conn.closed = true;
          conn.wake();
        },
      },
    });
    return conn;
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private async waitMore(deadline: number, what: string) {
    if (this.closed) throw new Error(`connection closed while waiting for ${what}; have ${JSON.stringify(this.buffer.toString("latin1").slice(0, 300))}`);
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`timed out waiting for ${what}; have ${JSON.stringify(this.buffer.toString("latin1").slice(0, 300))}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      timer = setTimeout(resolve, left);
    });
    clearTimeout(timer);
  }

  write(data: string | Uint8Array): number {
    return this.socket.write(data);
  }

  /** Bytes received and not consumed yet. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Reads one response head (status line to blank line). */
  async readHead(timeoutMs = 10_000): Promise<Head> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const end = this.buffer.indexOf("\r\n\r\n");
      if (end !== -1) {
        const raw = this.buffer.subarray(0, end).toString("latin1");
        this.buffer = this.buffer.subarray(end + 4);
        return parseHead(raw);
      }
      await this.waitMore(deadline, "a response head");
    }
  }

  /** Reads exactly n bytes. */
  async readBytes(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = performance.now() + timeoutMs;
    while (this.buffer.length < n) await this.waitMore(deadline, `${n} body bytes`);
    const out = Buffer.from(this.buffer.subarray(0, n));
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** Reads the body that follows `head` by its framing (Content-Length or chunked; none for HEAD/1xx/204/304). */
  async readBody(head: Head, method = "GET", timeoutMs = 10_000): Promise<Buffer> {
    if (method === "HEAD" || head.status === 204 || head.status === 304 || head.status < 200) return Buffer.alloc(0);
    const te = headerValue(head, "transfer-encoding");
    if (te?.toLowerCase().includes("chunked")) {
      const deadline = performance.now() + timeoutMs;
      const parts: Buffer[] = [];
      for (;;) {
        let eol: number;
        while ((eol = this.buffer.indexOf("\r\n")) === -1) await this.waitMore(deadline, "a chunk size");
        const size = parseInt(this.buffer.subarray(0, eol).toString("latin1").split(";")[0]!.trim(), 16);
        this.buffer = this.buffer.subarray(eol + 2);
        if (!Number.isFinite(size)) throw new Error("bad chunk size");
        if (size === 0) {
          // trailers (none expected) and the final CRLF
          let end: number;
          while ((end = this.buffer.indexOf("\r\n")) === -1) await this.waitMore(deadline, "the last chunk");
          this.buffer = this.buffer.subarray(end + 2);
          return Buffer.concat(parts);
        }
        parts.push(await this.readBytes(size, deadline - performance.now()));
        await this.readBytes(2, deadline - performance.now());
      }
    }
    const cl = headerValue(head, "content-length");
    if (cl !== undefined) return this.readBytes(Number(cl), timeoutMs);
    // Neither: the body runs to the close of the connection.
    const deadline = performance.now() + timeoutMs;
    while (!this.closed) await this.waitMore(deadline, "the close of a body without length").catch((e) => {
      if (!this.closed) throw e;
    });
    const out = this.buffer;
    this.buffer = Buffer.alloc(0);
    return out;
  }

  /** Resolves true if the peer closes within `timeoutMs`, false otherwise. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.closed && performance.now() < deadline) await this.waitMore(deadline, "close").catch(() => {});
    return this.closed;
  }

  pause() {
    this.socket.pause();
  }

  resume() {
    this.socket.resume();
  }

  close() {
    this.socket.end();
  }
}

/** Sends one request on a fresh connection and reads the response (head and framed body). */
export async function rawExchange(
  port: number,
  request: string | Uint8Array,
  method = "GET",
  timeoutMs = 10_000,
): Promise<{ head: Head; body: Buffer; extra: number }> {
  const conn = await RawConnection.open(port);
  try {
    conn.write(request);
    const head = await conn.readHead(timeoutMs);
    const body = await conn.readBody(head, method, timeoutMs);
    // Anything after the framed body would be a framing bug. A request that
    // says `Connection: close` is answered by a close: everything sent is in
    // by then. (Every caller that reads `extra` says it.)
    const text = typeof request === "string" ? request : Buffer.from(request).toString("latin1");
    if (/\r\nconnection:\s*close\r\n/i.test(text.slice(0, text.indexOf("\r\n\r\n") + 2))) {
      if (!(await conn.closedWithin(timeoutMs))) throw new Error(`the connection was still open ${timeoutMs}ms after a Connection: close exchange`);
    }
    return { head, body, extra: conn.pending };
  } finally {
    conn.close();
  }
}

// ------------------------------------------------------- throttled download

export interface DownloadResult {
  head: Head;
  /** Body bytes received (after de-chunking). */
  bodyBytes: number;
  /** The body framing ended properly (Content-Length reached or the last chunk seen). */
  complete: boolean;
  /** Every received segment started with the byte expected at its offset (offset % 251). */
  patternOk: boolean;
  seconds: number;
}

/**
 * GETs with `request` and reads the body at about `bytesPerSecond`: the socket
 * is paused whenever the client is ahead of that rate. The body is counted and
 * spot-checked (pattern byte at every segment start), never stored.
 */
export function throttledDownload(
  port: number,
  request: string,
  bytesPerSecond: number,
  timeoutMs: number,
  onProgress?: (bytes: number) => void,
): Promise<DownloadResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let headBuf = Buffer.alloc(0);
    let head: Head | undefined;
    let chunked = false;
    let length = Infinity;
    let bodyBytes = 0;
    let wireBytes = 0;
    let patternOk = true;
    let complete = false;
    let settled = false;
    // chunked decoder state
    let state: "size" | "data" | "crlf" | "trailer" = "size";
    let line = "";
    let chunkLeft = 0;
    let crlfLeft = 0;
    let resumeTimer: ReturnType<typeof setTimeout> | undefined;
    let sock: Socket<undefined> | undefined;

    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(resumeTimer);
      sock?.end();
      if (error) return reject(error);
      resolve({ head: head ?? parseHead(""), bodyBytes, complete, patternOk, seconds: (performance.now() - started) / 1000 });
    };
    const timer = setTimeout(
      () => finish(new Error(`download timed out after ${timeoutMs}ms with ${bodyBytes} body bytes`)),
      timeoutMs,
    );

    const segment = (data: Uint8Array, start: number, end: number) => {
      if (end <= start) return;
      if (data[start] !== bodyBytes % 251) patternOk = false;
      bodyBytes += end - start;
    };

    const consume = (data: Uint8Array) => {
      if (!chunked) {
        segment(data, 0, Math.min(data.length, length - bodyBytes));
        if (bodyBytes >= length) {
          complete = bodyBytes === length;
          finish();
        }
        return;
      }
      let i = 0;
      while (i < data.length && !complete) {
        if (state === "size") {
          const nl = data.indexOf(10, i);
          if (nl === -1) {
            line += Buffer.from(data.subarray(i)).toString("latin1");
            return;
          }
          line += Buffer.from(data.subarray(i, nl)).toString("latin1");
          i = nl + 1;
          const size = parseInt(line.trim().split(";")[0]!, 16);
          line = "";
          if (!Number.isFinite(size)) return finish(new Error("bad chunk size line"));
          if (size === 0) state = "trailer";
          else {
            state = "data";
            chunkLeft = size;
          }
        } else if (state === "data") {
          const take = Math.min(chunkLeft, data.length - i);
          segment(data, i, i + take);
          i += take;
          chunkLeft -= take;
          if (chunkLeft === 0) {
            state = "crlf";
            crlfLeft = 2;
          }
        } else if (state === "crlf") {
          const take = Math.min(crlfLeft, data.length - i);
          i += take;
          crlfLeft -= take;
          if (crlfLeft === 0) state = "size";
        } else {
          // trailer section: ends with an empty line
          line += Buffer.from(data.subarray(i)).toString("latin1");
          i = data.length;
          if (line === "\r\n" || line.endsWith("\r\n\r\n")) {
            complete = true;
            finish();
          }
        }
      }
    };

    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          sock = s;
          s.write(request);
        },
        data(s, data) {
          wireBytes += data.length;
          if (!head) {
            headBuf = Buffer.concat([headBuf, Buffer.from(data)]);
            const end = headBuf.indexOf("\r\n\r\n");
            if (end === -1) return;
            head = parseHead(headBuf.subarray(0, end).toString("latin1"));
            chunked = (headerValue(head, "transfer-encoding") ?? "").toLowerCase().includes("chunked");
            const cl = headerValue(head, "content-length");
            if (!chunked && cl !== undefined) length = Number(cl);
            const rest = headBuf.subarray(end + 4);
            headBuf = Buffer.alloc(0);
            if (rest.length) consume(rest);
          } else consume(data);
          onProgress?.(bodyBytes);
          if (settled) return;
          // Ahead of the rate? Stop reading until we are back on schedule.
          const due = (wireBytes / bytesPerSecond) * 1000 - (performance.now() - started);
          if (due > 5) {
            s.pause();
            resumeTimer = setTimeout(() => s.resume(), due);
          }
        },
        close() {
          if (!chunked && length === Infinity) complete = true; // body delimited by close
          finish();
        },
        error(_s, error) {
          finish(error);
        },
      },
    }).catch((error) => finish(error));
  });
}

// ------------------------------------------------------ event-stream client

/**
 * A long-lived GET read over a raw socket: resolves `firstEvent` once a
 * complete `data:` event has arrived. `close()` ends the connection.
 */
export class RawStreamClient {
  status = 0;
  /** `data:` lines received so far. */
  events = 0;
  closed = false;
  readonly firstEvent: Promise<void>;
  private resolveFirst!: () => void;
  private rejectFirst!: (e: Error) => void;
  private socket?: Socket<undefined>;
  private head = "";
  private tail = "";

  constructor(port: number, path: string, host: string) {
    this.firstEvent = new Promise<void>((resolve, reject) => {
      this.resolveFirst = resolve;
      this.rejectFirst = reject;
    });
    this.firstEvent.catch(() => {});
    const self = this;
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          self.socket = s;
          s.write(requestHead("GET", path, [["Host", host], ["Accept", "text/event-stream"]]));
        },
        data(_s, data) {
          let text = Buffer.from(data).toString("latin1");
          if (!self.status) {
            self.head += text;
            const end = self.head.indexOf("\r\n\r\n");
            if (end === -1) return;
            self.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(self.head)?.[1] ?? 0);
            text = self.head.slice(end + 4);
            if (self.status !== 200) return self.rejectFirst(new Error(`status ${self.status}`));
          }
          // Count `data:` lines, also when one is split across reads.
          const scan = self.tail + text;
          self.events += scan.split("data:").length - 1;
          // 4 chars cannot hold a whole `data:`, so nothing is counted twice.
          self.tail = scan.slice(-4);
          if (self.events > 0) self.resolveFirst();
        },
        close() {
          self.closed = true;
          self.rejectFirst(new Error("closed before the first event"));
        },
        error(_s, error) {
          self.closed = true;
          self.rejectFirst(error);
        },
      },
    }).catch((error: Error) => self.rejectFirst(error));
  }

  close() {
    this.socket?.end();
  }
}
