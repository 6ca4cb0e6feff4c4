// Backends for the streaming and body-handling suites.
//
// startStreamBackend(): a Bun.serve app that answers
//   /up                        200 (health check)
//   /sse?events=N&interval=MS  text/event-stream: `: open` at once, then event i
//                              (`id: i`, `data: event i`) every MS ms, then the end
//   /chunks?n=N&interval=MS&type=T   the same timing, plain chunks, content type T
//   /hold                      text/event-stream: one event at once, then held open
//                              until the client goes away (counted in `holding`)
//   /bytes?n=N                 N pattern bytes (i % 251) from memory: exact Content-Length
//   /stream?n=N                N pattern bytes, pull-based in 64 KiB chunks (chunked)
//   /cookies?n=N               N separate Set-Cookie headers
//   /empty?status=S            status S (204, 304, …) with no body
//   /upload?rate=B             reads the body (at most B bytes/s if given); JSON {bytes, patternOk, headers}
//   /slow?ms=N                 answers after N ms
//   /status/N                  status N, body `app says N` (text/plain)
//
// startRawBigBackend(): a raw TCP HTTP/1.1 server whose /big?n=N writes an
// exact `Content-Length: N` head and then N pattern bytes (or only M of them
// before closing the connection, with &cut=M), socket-write by
// socket-write with backpressure; /late?ms=T sends an event-stream head at
// once and its one event T ms later (Bun.serve would drop the length of a
// streamed body, so the upstream length would never exist).
import type { Server, Socket, TCPSocketListener } from "bun";

export const pattern = (i: number) => i % 251;

/** A window of the pattern long enough to slice any chunk of `size` bytes at any phase. */
function patternWindow(size: number): Uint8Array {
  const window = new Uint8Array(size + 251);
  for (let i = 0; i < window.length; i++) window[i] = i % 251;
  return window;
}

export interface StreamBackend {
  port: number;
  address: string;
  server: Server<unknown>;
  /** /hold responses currently open, and how many were cancelled by the reader going away. */
  holding: number;
  holdCancelled: number;
  /** /upload requests received so far, newest last. */
  uploads: { bytes: number; patternOk: boolean; headers: Record<string, string> }[];
  /** Body bytes read so far by the /upload request in progress. */
  uploadProgress: number;
  requests: number;
  stop(): Promise<void>;
}

export function startStreamBackend(): StreamBackend {
  const encoder = new TextEncoder();
  const window64k = patternWindow(64 * 1024);
  const backend: StreamBackend = {
    port: 0,
    address: "",
    server: undefined as unknown as Server<unknown>,
    holding: 0,
    holdCancelled: 0,
    uploads: [],
    uploadProgress: 0,
    requests: 0,
    async stop() {
      await backend.server.stop(true);
    },
  };

  /** Emits `count` pieces, one every `interval` ms, the first after `interval`. */
  function timed(count: number, interval: number, first: string | undefined, piece: (i: number) => string) {
    let i = 0;
    let opened = first === undefined;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (!opened) {
          opened = true;
          controller.enqueue(encoder.encode(first));
          return;
        }
        if (i >= count) return controller.close();
        await Bun.sleep(interval);
        controller.enqueue(encoder.encode(piece(i++)));
      },
    });
  }

  backend.server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    idleTimeout: 0,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    async fetch(req, server) {
      const url = new URL(req.url);
      const q = (name: string, fallback: number) => Number(url.searchParams.get(name) ?? fallback);
      const path = url.pathname;
      if (path === "/up") return new Response("ok");
      backend.requests++;
      if (path === "/sse") {
        server.timeout(req, 0);
        const stream = timed(q("events", 3), q("interval", 100), ": open\n\n", (i) => `id: ${i}\ndata: event ${i}\n\n`);
        return new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
      }
      if (path === "/chunks") {
        server.timeout(req, 0);
        const stream = timed(q("n", 3), q("interval", 100), undefined, (i) => `chunk ${i}\n`);
        return new Response(stream, { headers: { "content-type": url.searchParams.get("type") ?? "text/plain" } });
      }
      if (path === "/hold") {
        server.timeout(req, 0);
        let active = true;
        backend.holding++;
        const end = () => {
          if (!active) return;
          active = false;
          backend.holding--;
          backend.holdCancelled++;
        };
        req.signal.addEventListener("abort", end);
        let sent = false;
        const stream = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (sent) return new Promise<void>(() => {}); // held open: nothing more, ever
            sent = true;
            controller.enqueue(encoder.encode("data: hello\n\n"));
          },
          cancel: end,
        });
        return new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
      }
      if (path === "/bytes") {
        const n = q("n", 1024);
        return new Response(window64k.length >= n ? window64k.slice(0, n) : patternWindow(n).slice(0, n), {
          headers: { "content-type": "application/octet-stream" },
        });
      }
      if (path === "/stream") {
        const total = q("n", 0);
        let sent = 0;
        const stream = new ReadableStream<Uint8Array>(
          {
            pull(controller) {
              if (sent >= total) return controller.close();
              const n = Math.min(64 * 1024, total - sent);
              const phase = sent % 251;
              controller.enqueue(window64k.slice(phase, phase + n));
              sent += n;
            },
          },
          { highWaterMark: 1 },
        );
        return new Response(stream, { headers: { "content-type": "application/octet-stream" } });
      }
      if (path === "/cookies") {
        const headers = new Headers({ "content-type": "text/plain" });
        for (let i = 0; i < q("n", 3); i++) headers.append("set-cookie", `c${i}=v${i}; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT; HttpOnly`);
        return new Response("cookies", { headers });
      }
      if (path === "/empty") {
        const status = q("status", 204);
        return new Response(null, { status, headers: status === 304 ? { etag: '"v1"' } : {} });
      }
      if (path === "/upload") {
        let bytes = 0;
        let patternOk = true;
        backend.uploadProgress = 0;
        const rate = q("rate", 0); // bytes per second, 0 = as fast as it comes
        const started = performance.now();
        if (req.body) {
          for await (const chunk of req.body) {
            if (chunk.byteLength && chunk[0] !== bytes % 251) patternOk = false;
            bytes += chunk.byteLength;
            backend.uploadProgress = bytes;
            if (rate > 0) {
              const due = (bytes / rate) * 1000 - (performance.now() - started);
              if (due > 1) await Bun.sleep(due);
            }
          }
        }
        const record = { bytes, patternOk, headers: Object.fromEntries(req.headers) };
        backend.uploads.push(record);
        return Response.json(record);
      }
      if (path === "/slow") {
        await Bun.sleep(q("ms", 1000));
        return new Response("slow");
      }
      const status = /^\/status\/(\d{3})$/.exec(path);
      if (status) return new Response(`app says ${status[1]}`, { status: Number(status[1]), headers: { "content-type": "text/plain" } });
      return new Response("not found here", { status: 404, headers: { "content-type": "text/plain" } });
    },
  });
  backend.port = backend.server.port!;
  backend.address = `127.0.0.1:${backend.port}`;
  return backend;
}

/** A body of `total` pattern bytes generated on the fly in `chunk`-byte pieces (pull-based). */
export function patternBody(total: number, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  const window = patternWindow(chunk);
  let sent = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (sent >= total) return controller.close();
        const n = Math.min(chunk, total - sent);
        const phase = sent % 251;
        controller.enqueue(window.slice(phase, phase + n));
        sent += n;
      },
    },
    { highWaterMark: 1 },
  );
}

// ------------------------------------------------------------ raw big backend

export interface RawBigBackend {
  port: number;
  address: string;
  /** /big bodies being written now, finished, and abandoned by the reader. */
  active: number;
  finished: number;
  aborted: number;
  /** Body bytes handed to the kernel so far (all /big requests). */
  written: number;
  stop(): void;
}

interface ConnState {
  buffer: Buffer;
  pump?: () => void;
  busy: boolean;
}

export function startRawBigBackend(): RawBigBackend {
  const CHUNK = 64 * 1024;
  const window = patternWindow(CHUNK);
  const backend: RawBigBackend = { port: 0, address: "", active: 0, finished: 0, aborted: 0, written: 0, stop: () => listener.stop(true) };

  const serveNext = (socket: Socket<ConnState>) => {
    const st = socket.data;
    if (st.busy) return;
    const end = st.buffer.indexOf("\r\n\r\n");
    if (end === -1) return;
    const head = st.buffer.subarray(0, end).toString("latin1");
    st.buffer = st.buffer.subarray(end + 4);
    const target = head.split(" ")[1] ?? "/";
    const url = new URL(target, "http://x");
    if (url.pathname === "/late") {
      // An event stream whose head goes out at once and whose first event comes `ms` later.
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
      const event = "data: late\n\n";
      setTimeout(() => socket.write(`${event.length.toString(16)}\r\n${event}\r\n0\r\n\r\n`), Number(url.searchParams.get("ms") ?? 1000));
      return serveNext(socket);
    }
    if (url.pathname !== "/big") {
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
      return serveNext(socket);
    }
    const total = Number(url.searchParams.get("n") ?? 0);
    // cut=M: the app dies after M body bytes (it declared `total`).
    const cut = Number(url.searchParams.get("cut") ?? total);
    st.busy = true;
    backend.active++;
    socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`);
    let offset = 0;
    st.pump = () => {
      while (offset < total) {
        if (offset >= cut) {
          socket.end();
          return;
        }
        const n = Math.min(CHUNK, total - offset, cut - offset);
        const phase = offset % 251;
        const wrote = socket.write(window.subarray(phase, phase + n));
        if (wrote <= 0) return; // kernel buffer full: wait for drain
        offset += wrote;
        backend.written += wrote;
        if (wrote < n) return;
      }
      st.pump = undefined;
      st.busy = false;
      backend.active--;
      backend.finished++;
      serveNext(socket);
    };
    st.pump();
  };

  const listener: TCPSocketListener<ConnState> = Bun.listen<ConnState>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(socket) {
        socket.data = { buffer: Buffer.alloc(0), busy: false };
      },
      data(socket, data) {
        socket.data.buffer = Buffer.concat([socket.data.buffer, Buffer.from(data)]);
        serveNext(socket);
      },
      drain(socket) {
        socket.data.pump?.();
      },
      close(socket) {
        if (socket.data?.busy) {
          socket.data.busy = false;
          socket.data.pump = undefined;
          backend.active--;
          backend.aborted++;
        }
      },
      error() {},
    },
  });
  backend.port = listener.port;
  backend.address = `127.0.0.1:${listener.port}`;
  return backend;
}
