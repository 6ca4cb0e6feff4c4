// Serves the proxy's fetch-style handler on a node:http(s) server.
//
// Why not Bun.serve: it drops a Content-Length set on a streamed body and
// frames it chunked instead (oven-sh/bun#10507, BUN-NOTES §1.3), so a
// download relayed from an app would lose its size. Bun's node:http server
// writes the header as given. The Hono app, the router and the forwarder stay
// on web Requests and Responses; this module is the only place that knows
// about IncomingMessage and ServerResponse.
import * as http from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { isWebSocketHandshake } from "../proxy/headers.ts";

/** What the request handlers need from the listener (Bun.serve's names). */
export interface RequestContext {
  requestIP(req: Request): { address: string; port: number } | null;
  timeout(req: Request, seconds: number): void;
  /** "HTTP/1.0", "HTTP/1.1"…; Bun.serve does not say (undefined). */
  httpVersion?(req: Request): string;
}

export type FetchHandler = (req: Request, server: RequestContext) => Response | Promise<Response | undefined> | undefined;

/** Bodies up to this size (declared by Content-Length) are written in one call. */
const ONE_WRITE = 64 * 1024;

const messages = new WeakMap<Request, IncomingMessage>();

/** RequestContext for requests built here, answered from the node request. */
export const nodeContext: RequestContext = {
  requestIP(req) {
    const socket = messages.get(req)?.socket;
    if (!socket?.remoteAddress) return null;
    return { address: socket.remoteAddress, port: socket.remotePort ?? 0 };
  },
  httpVersion(req) {
    const message = messages.get(req);
    return message ? `HTTP/${message.httpVersion}` : "HTTP/1.1";
  },
  // node's server has no per-request idle timer (server.timeout is 0); the
  // keep-alive timeout applies between requests only.
  timeout() {},
};

/** The absolute URL of a request target: origin-form gets the Host (or a placeholder without one). */
function requestUrl(req: IncomingMessage, scheme: string, host: string | undefined): string {
  let target = req.url ?? "/";
  // absolute-form: its path, under the authority already taken as the host.
  if (absoluteFormAuthority(target) !== undefined) {
    target = target.replace(/^https?:\/\/[^/?#]*/i, "");
    if (!target.startsWith("/")) target = `/${target}`; // `http://host?q` is `/?q`
  }
  if (!target.startsWith("/")) return target; // `*` or an authority: fails to parse and is a 400
  return `${scheme}://${host || "localhost"}${target}`;
}

/** The authority of an absolute-form target (`http://host:port/path`), else undefined. */
function absoluteFormAuthority(target: string | undefined): string | undefined {
  const match = target ? /^https?:\/\/([^/?#]*)/i.exec(target) : null;
  return match ? match[1] : undefined;
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return (length !== undefined && length !== "0") || req.headers["transfer-encoding"] !== undefined;
}

/**
 * The request body as a web stream with backpressure: the socket is paused
 * while the stream's queue is full and resumed when the forwarder pulls.
 */
function bodyStream(req: IncomingMessage, state: BodyState): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        req.on("data", (chunk: Buffer) => {
          if (state.abandoned) return;
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) req.pause();
        });
        req.on("end", () => {
          try {
            controller.close();
          } catch {}
        });
        req.on("error", (error) => {
          try {
            controller.error(error);
          } catch {}
        });
      },
      pull() {
        req.resume();
      },
      // The proxy stopped reading (a 413, a failed target): the rest is read
      // and dropped so that the answer still reaches the client, and the
      // connection closes after it.
      cancel() {
        state.abandoned = true;
        req.resume();
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk?.byteLength ?? 0 },
  );
}

interface BodyState {
  /** The request body was cancelled before its end. */
  abandoned: boolean;
}

function toRequest(req: IncomingMessage, scheme: string, signal: AbortSignal, state: BodyState): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  // Repeated identical lengths (allowed, RFC 9110 §8.6) would join as "5, 5";
  // node's parser has checked they agree and keeps one.
  if (req.headers["content-length"] !== undefined) headers.set("content-length", req.headers["content-length"]);
  const withBody = hasBody(req) && req.method !== "GET" && req.method !== "HEAD";
  const init: RequestInit & { duplex?: string } = { method: req.method, headers, signal };
  if (withBody) {
    init.body = bodyStream(req, state);
    init.duplex = "half";
  }
  let host = req.headers.host;
  // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2):
  // routing and the app see the same host.
  const authority = absoluteFormAuthority(req.url);
  if (authority !== undefined) {
    host = authority;
    headers.set("host", authority);
  }
  try {
    return new Request(requestUrl(req, scheme, host), init);
  } catch (error) {
    // A Host no URL can hold (`a b`, `[::1`): the proxy app answers it 400
    // from the header itself, with its error page and a log line.
    if (!host) throw error;
    return new Request(requestUrl(req, scheme, undefined), init);
  }
}

/** Status line and headers, several Set-Cookie kept apart. */
function writeHead(res: ServerResponse, response: Response, close: boolean) {
  // `Connection: close`, and node closes the connection after this answer.
  if (close) res.shouldKeepAlive = false;
  const flat: string[] = [];
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") flat.push(name, value);
  });
  for (const cookie of response.headers.getSetCookie()) flat.push("set-cookie", cookie);
  res.writeHead(response.status, response.statusText || undefined, flat as never);
}

function waitForDrain(res: ServerResponse): Promise<boolean> {
  // Already closed: neither event would come.
  if (res.destroyed || res.closed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off("drain", onDrain);
      res.off("close", onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    res.on("drain", onDrain);
    res.on("close", onClose);
  });
}

/**
 * Head and body in one socket write: on a TLS connection each write is a TLS
 * record and a syscall, and corking them together served ~20 % more HTTPS
 * requests per second.
 */
function writeWhole(res: ServerResponse, response: Response, close: boolean, body: Uint8Array | undefined) {
  const socket = res.socket;
  socket?.cork();
  writeHead(res, response, close);
  res.end(body);
  if (socket) process.nextTick(() => socket.uncork());
}

/** Writes a web Response to a node response, with backpressure; a failed body cuts the connection. */
async function sendResponse(res: ServerResponse, response: Response, method: string | undefined, close: boolean) {
  const body = response.body;
  if (!body || method === "HEAD") {
    if (body) void body.cancel().catch(() => {});
    writeWhole(res, response, close, undefined);
    return;
  }
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared <= ONE_WRITE) {
    writeWhole(res, response, close, new Uint8Array(await response.arrayBuffer()));
    return;
  }
  writeHead(res, response, close);
  // The head goes out now, not with the first body chunk: an event stream's
  // client must see it open before the first event.
  res.flushHeaders();
  const reader = body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (res.destroyed || res.closed) {
        void reader.cancel().catch(() => {});
        return;
      }
      if (!res.write(value) && !(await waitForDrain(res))) {
        void reader.cancel().catch(() => {});
        return;
      }
    }
    res.end();
  } catch {
    // The app's body broke off: the client must see a truncated response,
    // not a complete one, so the connection is cut rather than ended.
    res.destroy();
  }
}

/** A node:http request listener that runs `handler` on the request as a web Request. */
export function nodeRequestListener(handler: FetchHandler, scheme: "http" | "https", onError: () => Response) {
  return async (req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    // The client went away before the response was complete: cancel the upstream.
    res.on("close", () => {
      if (!res.writableFinished) controller.abort();
    });
    let request: Request;
    const body: BodyState = { abandoned: false };
    try {
      request = toRequest(req, scheme, controller.signal, body);
    } catch {
      const page = "Bad Request\n";
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8", "content-length": String(page.length), connection: "close" });
      res.end(page);
      return;
    }
    messages.set(request, req);
    let response: Response | undefined;
    try {
      response = (await handler(request, nodeContext)) ?? onError();
    } catch {
      response = onError();
    }
    // Answered without reading the body (a 404, a 413 on the declared length,
    // a redirect): the rest is read and dropped, and the connection closes
    // after the answer, instead of stalling on the unread bytes.
    if (request.body && !request.bodyUsed && !req.complete) {
      body.abandoned = true;
      req.resume();
    }
    if (res.destroyed) {
      void response.body?.cancel().catch(() => {});
      return;
    }
    await sendResponse(res, response, req.method, body.abandoned && !req.complete);
  };
}

export interface NodeListenerOptions {
  port: number;
  hostname: string | undefined;
  /** Keep-alive connections idle longer than this are closed. */
  idleTimeoutMs: number;
  /** WebSocket handshakes, and CONNECT; they get the raw socket. */
  upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

/**
 * A node:http server with Bun.serve's lifecycle: a bound port, a count of
 * requests in flight, and a graceful or immediate stop.
 */
export class NodeListener {
  /** Connections with a request being answered, and those to close once it is. */
  private readonly busy = new WeakMap<Duplex, number>();
  private readonly closeWhenDone = new WeakSet<Duplex>();
  /** Responses being written: requests in flight, told `Connection: close` on a graceful stop. */
  private readonly answering = new Set<ServerResponse>();
  private stopping = false;
  readonly server: Server;

  /** `create` makes the server: node:http by default, node:https for the HTTPS listener. */
  constructor(
    private readonly options: NodeListenerOptions,
    listener: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
    create: (handle: (req: IncomingMessage, res: ServerResponse) => void) => Server = (handle) => http.createServer(handle),
  ) {
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      this.busy.set(socket, (this.busy.get(socket) ?? 0) + 1);
      this.answering.add(res);
      if (this.stopping) res.shouldKeepAlive = false;
      res.once("close", () => {
        this.answering.delete(res);
        const left = (this.busy.get(socket) ?? 1) - 1;
        this.busy.set(socket, left);
        // Stopping, or the client sent something unparsable after this
        // request: the connection ends once its answer is out.
        if (left === 0 && (this.stopping || this.closeWhenDone.has(socket))) socket.end();
      });
      void listener(req, res).catch(() => res.destroy());
    };
    this.server = create(handle);
    // Long uploads and slow apps are timed by the proxy itself
    // (--target-timeout), never by node's request timer.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = options.idleTimeoutMs;
    this.server.keepAliveTimeout = options.idleTimeoutMs;
    this.server.timeout = 0;
    this.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (isWebSocketHandshake(req.method, (name) => req.headers[name] as string | undefined)) {
        options.upgrade(req, socket, head);
        return;
      }
      // Other upgrades (h2c…) are not offered: the request is answered as an
      // ordinary one, then the connection closes (node has handed the socket
      // over, so it cannot carry another request).
      const res = new http.ServerResponse(req);
      res.assignSocket(socket as Socket);
      res.shouldKeepAlive = false;
      res.once("finish", () => socket.end());
      // node answers `Expect: 100-continue` only for requests it dispatches itself.
      if (/100-continue/i.test(req.headers.expect ?? "")) res.writeContinue();
      handle(req, res);
    });
    // node hands CONNECT over as a raw socket too; the proxy app refuses it (405).
    this.server.on("connect", options.upgrade);
    // A malformed request: 400 (431 for oversized headers). If a request on
    // this connection is still being answered (bytes after a `Connection:
    // close` request, garbage after a pipelined one), that answer goes out
    // first and the connection closes after it.
    this.server.on("clientError", (error: Error & { code?: string }, socket: Duplex) => {
      if (this.busy.get(socket)) {
        this.closeWhenDone.add(socket);
        for (const res of this.answering) if (res.socket === socket) res.shouldKeepAlive = false;
        return;
      }
      if (!socket.writable) return socket.destroy();
      const status = error.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    });
  }

  /** Binds the port; rejects with the listen error (EADDRINUSE, EACCES…). */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once("error", onError);
      // exclusive: a second parachute on the same port must fail instead of sharing it.
      this.server.listen({ port: this.options.port, host: this.options.hostname, exclusive: true }, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === "object" && address ? address.port : 0;
  }

  get pendingRequests(): number {
    return this.answering.size;
  }

  /** Graceful: no new connections, idle ones closed, resolves when requests in flight are done. Forced: cuts them. */
  stop(force: boolean): Promise<void> {
    this.stopping = true;
    // Answers not yet started say `Connection: close`, so no client sends
    // another request on a connection about to close.
    for (const res of this.answering) if (!res.headersSent) res.shouldKeepAlive = false;
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      if (force) this.server.closeAllConnections();
      else this.server.closeIdleConnections();
    });
  }
}
