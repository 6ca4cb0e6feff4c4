// A real Bun.serve WebSocket app to put behind the proxy. Every path but /up
// upgrades. It records what it saw (handshake headers, offered subprotocols,
// close codes) and answers these text commands:
//   whoami                       its name
//   close:<code>:<reason>        closes the socket with that code and reason
//   close                        closes without a code (the peer sees 1005)
//   terminate                    drops the TCP connection without a close frame
//   push:<total>:<frame>         sends <total> bytes in binary frames of <frame>
//                                bytes, honouring its own backpressure (waits for
//                                `drain` whenever send() reports -1). Frame i is
//                                filled with the byte i % 251.
// Anything else is echoed back unchanged (text as text, binary as binary),
// except on /sink, where binary messages are only counted (`sunk`).
// On /greet the backend sends "welcome" as soon as the socket opens; /forbidden
// is refused with a plain 403 instead of an upgrade, /login-first with a 302
// carrying a 280 KB page and two cookies.
// The subprotocol: chat.v2 when offered (whatever the client listed first).
import type { Server, ServerWebSocket } from "bun";

interface Conn {
  id: number;
  protocol: string;
  /** Connected on /sink: binary messages are counted, not echoed. */
  sink: boolean;
  path: string;
  onDrain?: () => void;
}

export interface WsHandshake {
  id: number;
  url: string;
  headers: Record<string, string>;
  offered: string[];
  chosen: string;
}

export interface WsBackend {
  name: string;
  port: number;
  address: string;
  server: Server<Conn>;
  handshakes: WsHandshake[];
  closes: { id: number; code: number; reason: string; at: number }[];
  /** Sockets currently open on this backend. */
  open: number;
  /** Bytes of push frames accepted by send() so far (all pushes). */
  pushed: number;
  /** Frames send() dropped (returned 0): must stay 0. */
  dropped: number;
  /** Binary bytes received on /sink sockets, and whether frame i started with i % 251. */
  sunk: number;
  sunkFrames: number;
  sunkOk: boolean;
  /** Open server-side sockets by connection id (to pause and resume reading). */
  sockets: Map<number, ServerWebSocket<Conn>>;
  /** Resolves when a push has handed its last frame to send(). */
  pushDone: Promise<void>;
  stop(): Promise<void>;
}

export function startWsBackend(name: string): WsBackend {
  let nextId = 1;
  let resolvePush!: () => void;
  const backend: WsBackend = {
    name,
    port: 0,
    address: "",
    server: undefined as unknown as Server<Conn>,
    handshakes: [],
    closes: [],
    open: 0,
    pushed: 0,
    dropped: 0,
    sunk: 0,
    sunkFrames: 0,
    sunkOk: true,
    sockets: new Map(),
    pushDone: new Promise<void>((r) => (resolvePush = r)),
    async stop() {
      await backend.server.stop(true);
    },
  };

  function push(ws: ServerWebSocket<Conn>, total: number, frameSize: number) {
    backend.pushDone = new Promise<void>((r) => (resolvePush = r));
    const frames = Array.from({ length: 251 }, (_, i) => new Uint8Array(frameSize).fill(i));
    let sent = 0;
    let seq = 0;
    const pump = () => {
      while (sent < total) {
        if (ws.readyState !== 1) return;
        const n = Math.min(frameSize, total - sent);
        const frame = n === frameSize ? frames[seq % 251]! : frames[seq % 251]!.subarray(0, n);
        const result = ws.send(frame);
        if (result === 0) {
          backend.dropped++;
          return;
        }
        sent += n;
        seq++;
        backend.pushed += n;
        if (result === -1) {
          // Queued, but the peer is slow: continue only once it has drained.
          ws.data.onDrain = () => {
            ws.data.onDrain = undefined;
            pump();
          };
          return;
        }
      }
      resolvePush();
    };
    pump();
  }

  backend.server = Bun.serve<Conn>({
    hostname: "127.0.0.1",
    port: 0,
    development: false,
    fetch(req, server) {
      const url = new URL(req.url);
      if (url.pathname === "/up") return new Response("ok");
      if (url.pathname === "/forbidden") return new Response("no entry", { status: 403, headers: { "content-type": "text/plain", "x-app": name } });
      if (url.pathname === "/login-first") {
        // A refusal with a body larger than one socket read and two cookies.
        const headers = new Headers({ "content-type": "text/html", location: "/login" });
        headers.append("set-cookie", "a=1; Path=/");
        headers.append("set-cookie", "b=2; Path=/");
        return new Response("<p>sign in</p>".repeat(20_000), { status: 302, headers });
      }
      const offered = (req.headers.get("sec-websocket-protocol") ?? "")
        .split(",")
        .map((p) => p.trim())
        .filter(Boolean);
      const chosen = offered.includes("chat.v2") ? "chat.v2" : "";
      const id = nextId++;
      backend.handshakes.push({ id, url: req.url, headers: Object.fromEntries(req.headers), offered, chosen });
      const ok = server.upgrade(req, {
        data: { id, protocol: chosen, sink: url.pathname === "/sink", path: url.pathname },
        headers: chosen ? { "sec-websocket-protocol": chosen } : {},
      });
      return ok ? undefined : new Response("upgrade required", { status: 426 });
    },
    websocket: {
      idleTimeout: 0,
      open(ws) {
        backend.open++;
        backend.sockets.set(ws.data.id, ws);
        if (ws.data.path === "/greet") ws.send("welcome");
      },
      message(ws, message) {
        if (ws.data.sink && typeof message !== "string") {
          if (message[0] !== backend.sunkFrames % 251) backend.sunkOk = false;
          backend.sunkFrames++;
          backend.sunk += message.byteLength;
          return;
        }
        if (typeof message === "string") {
          if (message === "whoami") return void ws.send(name);
          if (message === "close") return ws.close();
          if (message === "terminate") return ws.terminate();
          const close = /^close:(\d+):(.*)$/s.exec(message);
          if (close) return ws.close(Number(close[1]), close[2]);
          const p = /^push:(\d+):(\d+)$/.exec(message);
          if (p) return push(ws, Number(p[1]), Number(p[2]));
        }
        ws.send(message);
      },
      drain(ws) {
        ws.data.onDrain?.();
      },
      close(ws, code, reason) {
        backend.open--;
        backend.sockets.delete(ws.data.id);
        backend.closes.push({ id: ws.data.id, code, reason, at: performance.now() });
      },
    },
  });
  backend.port = backend.server.port!;
  backend.address = `127.0.0.1:${backend.port}`;
  return backend;
}

/** A TCP target that accepts connections and never says anything. */
export function startSilentTarget(): { address: string; connections: number; stop(): void } {
  const target = {
    address: "",
    connections: 0,
    stop: () => listener.stop(true),
  };
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open() {
        target.connections++;
      },
      data() {},
    },
  });
  target.address = `127.0.0.1:${listener.port}`;
  return target;
}

// ------------------------------------------------------------------- client

export type WsMessage = string | ArrayBuffer;

/** Bun's WebSocket client with a message queue and promises for open and close. */
export class WsClient {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string; at: number }>;
  private queue: WsMessage[] = [];
  private waiters: ((m: WsMessage) => void)[] = [];
  /** Bytes of binary messages received (counted even when nobody is waiting). */
  binaryBytes = 0;
  onBinary?: (data: ArrayBuffer) => void;

  constructor(url: string, options: { host?: string; cookie?: string; protocols?: string[]; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { ...options.headers };
    if (options.host) headers.host = options.host;
    if (options.cookie) headers.cookie = options.cookie;
    // Bun's client takes headers and protocols in an options object.
    this.ws = new WebSocket(url, { headers, protocols: options.protocols ?? [] } as unknown as string[]);
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise<void>((resolve, reject) => {
      this.ws.addEventListener("open", () => resolve());
      this.ws.addEventListener("error", () => reject(new Error("websocket error before open")));
      this.ws.addEventListener("close", (e) => reject(new Error(`websocket closed before open (${e.code})`)));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.addEventListener("close", (e) => resolve({ code: e.code, reason: e.reason, at: performance.now() }));
    });
    this.ws.addEventListener("message", (e) => {
      const data = e.data as WsMessage;
      if (typeof data !== "string") {
        this.binaryBytes += data.byteLength;
        if (this.onBinary) return this.onBinary(data);
      }
      const waiter = this.waiters.shift();
      if (waiter) waiter(data);
      else this.queue.push(data);
    });
  }

  /** The next message, or a rejection after `timeoutMs`. */
  next(timeoutMs = 5000): Promise<WsMessage> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no websocket message within ${timeoutMs}ms`));
      }, timeoutMs);
      const waiter = (m: WsMessage) => {
        clearTimeout(timer);
        resolve(m);
      };
      this.waiters.push(waiter);
    });
  }

  /** Sends a text message and returns the reply. */
  async ask(text: string, timeoutMs = 5000): Promise<WsMessage> {
    this.ws.send(text);
    return this.next(timeoutMs);
  }

  close(code?: number, reason?: string) {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
  }
}
