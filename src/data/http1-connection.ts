// One client connection speaking HTTP/1.x: requests are parsed off the byte
// stream one after another (keep-alive, pipelining), each goes through the
// pipeline, and its reply is written with the app's own framing: a
// Content-Length stays a Content-Length, a chunked body stays chunked, and a
// 101 turns the connection into a WebSocket tunnel.
import { encodeChunk, LAST_CHUNK } from "../http/chunked.ts";
import { Fields } from "../http/fields.ts";
import { MAX_HEAD_BYTES, MAX_REQUEST_LINE, parseRequestHead, type RequestHead } from "../http/request-head.ts";
import { splitRequestTarget } from "../http/request-target.ts";
import { bodiless } from "../http/response-head.ts";
import { log } from "../log.ts";
import { isWebSocketHandshake } from "../proxy/headers.ts";
import { startRequestLog } from "../proxy/request-log.ts";
import type { BodySink, BodySource } from "./body.ts";
import { ClientBody } from "./client-body.ts";
import type { Pipeline } from "./pipeline.ts";
import type { Reply, Responder, SentOutcome } from "./reply.ts";
import { Cancel, ClientGone, type ProxyRequest, type Scheme } from "./request.ts";
import type { Transport } from "./transport.ts";
import { UpstreamBody } from "./upstream.ts";
import { WebSocketTunnel } from "./websocket-tunnel.ts";

/** A connection has this long to send a complete request head: from opening, or after the previous answer. */
export const HEAD_TIMEOUT_MS = 60_000;
/** A connection closed with a request body still arriving reads and drops it for at most this long. */
const LINGER_MS = 5_000;
/**
 * At a graceful stop, how long an idle connection still gets for its next
 * request, which is answered with `Connection: close`. A client may be
 * sending it just now (or, on a connection accepted as an upgrade began, its
 * first one); closing at once would leave that request unanswered.
 */
const IDLE_GRACE_MS = 1_000;
const HEAD_END = Buffer.from("\r\n\r\n");
const CRLF = Buffer.from("\r\n");

/** What the connection needs from the listener that owns it. */
export interface ConnectionOwner {
  readonly pipeline: Pipeline;
  /** A graceful stop is under way: answers say `Connection: close`. */
  readonly stopping: boolean;
  tunnelOpened(tunnel: WebSocketTunnel): void;
  tunnelClosed(tunnel: WebSocketTunnel): void;
  closed(connection: Http1Connection): void;
}

const STATUS_TEXT: Record<number, string> = {
  100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
  206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
  307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
  404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 410: "Gone", 414: "URI Too Long",
  413: "Content Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
  501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
};

// The Date header of replies, formatted once a second.
let dateSecond = 0;
let dateText = "";
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

type State = "head" | "busy" | "tunnel" | "closing" | "closed";

export class Http1Connection implements Responder {
  private state: State = "head";
  /** Bytes read but not parsed yet: a head in progress, or what follows the current request. */
  private buffer: Buffer | undefined;
  private body: ClientBody | undefined;
  private request: ProxyRequest | undefined;
  /** The head of the request being answered. */
  private head: RequestHead | undefined;
  private answered = false;
  /** The reply body being written. */
  private writer: BodyWriter | undefined;
  /** A finished reply waiting for its last bytes to be handed to the kernel. */
  private onFlushed: (() => void) | undefined;
  /** When the head being waited for must be complete (unix ms); 0 while answering. */
  deadline = Date.now() + HEAD_TIMEOUT_MS;
  /** Requests answered on this connection. */
  private lingerTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly transport: Transport,
    private readonly owner: ConnectionOwner,
    private readonly scheme: Scheme,
    /** The client's address (the TLS front knows it for connections it relays). */
    private readonly remoteAddr: string,
  ) {
    transport.events = {
      data: (chunk) => this.onData(chunk),
      drain: () => {
        this.writer?.stream.resume();
        const flushed = this.onFlushed;
        this.onFlushed = undefined;
        flushed?.();
      },
      end: () => this.onPeerEnd(),
      close: () => this.onClose(),
    };
  }

  /** Idle between requests, with nothing of the next one read. */
  get idle(): boolean {
    return this.state === "head" && !this.buffer;
  }

  private onData(chunk: Uint8Array) {
    if (this.state === "closing" || this.state === "closed") return;
    let rest = chunk;
    if (this.body && !this.body.complete) {
      const used = this.body.feed(chunk);
      if (used === chunk.length) return;
      rest = chunk.subarray(used);
    }
    this.buffer = this.buffer ? Buffer.concat([this.buffer, rest]) : Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength);
    if (this.state === "head") this.parse();
    // While a request is answered, what follows it waits (pipelining), within bounds.
    else if (this.state === "busy" && this.buffer.length > MAX_HEAD_BYTES) this.transport.pause();
  }

  private parse() {
    let buffer = this.buffer!;
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    let start = 0;
    while (start + 1 < buffer.length && buffer[start] === 13 && buffer[start + 1] === 10) start += 2;
    if (start) buffer = this.buffer = buffer.subarray(start);
    if (buffer.length === 0 || (buffer.length === 1 && buffer[0] === 13)) return;
    const lineEnd = buffer.indexOf(CRLF);
    if (lineEnd > MAX_REQUEST_LINE || (lineEnd === -1 && buffer.length > MAX_REQUEST_LINE)) return this.refuse(414, "request line too long");
    const end = buffer.indexOf(HEAD_END);
    if (end === -1) {
      if (buffer.length > MAX_HEAD_BYTES) this.refuse(431, "request head too large");
      return;
    }
    if (end > MAX_HEAD_BYTES) return this.refuse(431, "request head too large");
    const parsed = parseRequestHead(buffer.toString("latin1", 0, end));
    const rest = buffer.length > end + 4 ? buffer.subarray(end + 4) : undefined;
    this.buffer = undefined;
    if ("status" in parsed) return this.refuse(parsed.status, parsed.reason);
    this.begin(parsed, rest);
  }

  /** Starts answering a parsed request; `rest` is what arrived after its head. */
  private begin(head: RequestHead, rest: Buffer | undefined) {
    this.state = "busy";
    this.deadline = 0;
    const body = head.body.kind === "none" ? undefined : new ClientBody(head.body, this.transport, head.expectContinue);
    this.body = body;
    if (rest) {
      const used = body ? body.feed(rest) : 0;
      if (used < rest.length) this.buffer = rest.subarray(used);
    }
    // A body already known to be malformed: refused before any target is asked.
    if (body?.error) return this.refuse(400, `malformed request body: ${body.error.message}`);
    const request = this.requestFrom(head, body);
    this.request = request;
    this.head = head;
    this.answered = false;
    try {
      this.owner.pipeline.handle(request, this);
    } catch (error) {
      // A bug in a step: this request gets a 500, the server goes on.
      if (!this.answered) this.respond(this.internalError(request, error));
      else log.error("Unhandled error", { kind: "request", error: (error as Error)?.message ?? String(error) });
    }
  }

  /** The pipeline's reply to the current request. */
  respond(reply: Reply) {
    this.answered = true;
    this.write(reply, this.head);
  }

  private requestFrom(head: RequestHead, body: ClientBody | undefined): ProxyRequest {
    const target = splitRequestTarget(head.target);
    let hostHeader = head.fields.get("host") ?? "";
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2):
    // routing and the app see the same host.
    if (target?.authority !== undefined) {
      hostHeader = target.authority;
      head.fields.set("Host", target.authority);
    }
    return {
      method: head.method,
      path: target?.path,
      query: target?.query ?? "",
      hostHeader,
      headers: head.fields,
      proto: head.version,
      scheme: this.scheme,
      remoteAddr: this.remoteAddr,
      body: body ?? null,
      // RFC 6455 §4.1: the handshake is HTTP/1.1; over HTTP/1.0 it is an ordinary request.
      websocket: head.upgrade === "websocket" && head.version === "HTTP/1.1" && isWebSocketHandshake(head.method, head.fields),
      started: performance.now(),
      gone: new Cancel(),
    };
  }

  private internalError(request: ProxyRequest, error: unknown): Reply {
    log.error("Unhandled error", { kind: "request", error: (error as Error)?.message ?? String(error) });
    return this.owner.pipeline.reject(startRequestLog(request), 500, "internal error");
  }

  /** A request that cannot be parsed: its error page, then the connection closes. */
  private refuse(status: number, reason: string) {
    this.state = "busy";
    this.deadline = 0;
    const request: ProxyRequest = {
      method: "",
      path: undefined,
      query: "",
      hostHeader: "",
      headers: new Fields(),
      proto: "HTTP/1.1",
      scheme: this.scheme,
      remoteAddr: this.remoteAddr,
      body: null,
      websocket: false,
      started: performance.now(),
      gone: new Cancel(),
    };
    this.request = request;
    this.head = undefined;
    const reply = this.owner.pipeline.reject(startRequestLog(request), status, reason);
    this.write(reply, undefined, true);
  }

  /** Writes a reply: its head, then its body with the framing it calls for. */
  private write(reply: Reply, head: RequestHead | undefined, mustClose = false) {
    const request = this.request!;
    if (this.state === "closed") {
      if (reply.body && !(reply.body instanceof Uint8Array)) reply.body.cancel(new ClientGone());
      reply.upgrade?.transport.destroy();
      return reply.done({ bytes: 0, error: "client disconnected" });
    }
    const body = this.body;
    // The body was not wanted (a 404, a redirect): what is left of it is read and dropped.
    if (body && !body.complete) body.cancel();
    if (reply.upgrade) return this.openTunnel(reply);

    const method = request.method;
    const http10 = head?.version === "HTTP/1.0";
    let keepAlive = !mustClose && head !== undefined && head.keepAlive && !this.owner.stopping;
    // A body still arriving, or one that broke off: the connection cannot carry another request.
    if (body && (!body.complete || body.error)) keepAlive = false;
    const fields = reply.headers;
    let chunked = false;
    let raw = false;
    const stream = reply.body instanceof Uint8Array ? undefined : reply.body;
    if (bodiless(method, reply.status)) {
      stream?.cancel(new Error("no body in this answer"));
      // A HEAD answer of a chunked GET says so, rather than a length it does not have.
      if (method === "HEAD" && reply.chunked && !fields.has("content-length")) fields.set("Transfer-Encoding", "chunked");
    } else if (reply.body instanceof Uint8Array || reply.body === null) {
      fields.set("Content-Length", String(reply.body?.byteLength ?? 0));
    } else if (stream && stream.length === undefined) {
      if (http10) keepAlive = false;
      else {
        chunked = true;
        fields.set("Transfer-Encoding", "chunked");
        raw = reply.chunked === true && stream instanceof UpstreamBody;
        if (raw) (stream as UpstreamBody).raw = true;
      }
    } else if (stream && !fields.has("content-length")) {
      fields.set("Content-Length", String(stream.length));
    }
    if (!fields.has("date")) fields.append("Date", httpDate());
    if (!keepAlive) fields.set("Connection", "close");

    const replyHead = `HTTP/1.1 ${reply.status} ${reply.reason ?? STATUS_TEXT[reply.status] ?? ""}\r\n${fields.serialize()}\r\n`;
    if (!stream || bodiless(method, reply.status)) {
      const payload = reply.body instanceof Uint8Array && !bodiless(method, reply.status) ? reply.body : undefined;
      this.transport.write(withHead(replyHead, payload));
      return this.finished(reply, { bytes: payload?.byteLength ?? 0 }, keepAlive);
    }
    this.relay(reply, stream, replyHead, chunked && !raw, keepAlive);
  }

  /** Streams a reply body; the head goes out with the first chunk when that is already there. */
  private relay(reply: Reply, stream: BodySource, head: string, encode: boolean, keepAlive: boolean) {
    const writer = new BodyWriter(this, reply, stream, head, encode, keepAlive);
    this.writer = writer;
    stream.start(writer);
    writer.started();
  }

  /** The BodyWriter is done with the reply's body. */
  bodyWritten(writer: BodyWriter, outcome: SentOutcome) {
    if (this.writer === writer) this.writer = undefined;
    if (outcome.error) return writer.reply.done(outcome);
    this.finished(writer.reply, outcome, writer.keepAlive);
  }

  private finished(reply: Reply, outcome: { bytes: number }, keepAlive: boolean) {
    // The request is over once its last byte has left this process: only
    // then is it done on its target (a drain waits for it), and logged.
    if (this.transport.queued > 0 && !this.transport.closed) {
      this.onFlushed = () => this.finished(reply, outcome, keepAlive);
      return;
    }
    reply.done(outcome);
    this.request = undefined;
    if (this.state === "closed") return;
    if (!keepAlive) return this.closeAfterWrite();
    this.body = undefined;
    this.state = "head";
    // Kept alive although a stop began meanwhile (its head went out before): one more request, soon.
    this.deadline = Date.now() + (this.owner.stopping ? IDLE_GRACE_MS : HEAD_TIMEOUT_MS);
    this.transport.resume();
    if (this.buffer) this.parse();
  }

  private openTunnel(reply: Reply) {
    const upgrade = reply.upgrade!;
    const fields = reply.headers;
    this.transport.write(Buffer.from(`HTTP/1.1 101 ${reply.reason ?? "Switching Protocols"}\r\n${fields.serialize()}\r\n`, "latin1"));
    this.state = "tunnel";
    const early = this.buffer;
    this.buffer = undefined;
    const tunnel: WebSocketTunnel = new WebSocketTunnel(this.transport, upgrade.transport, () => {
      this.state = "closed";
      this.owner.tunnelClosed(tunnel);
      this.owner.closed(this);
      reply.done({ bytes: 0 });
    });
    upgrade.opened(tunnel);
    this.owner.tunnelOpened(tunnel);
    tunnel.start(early, upgrade.initial);
  }

  /**
   * Closes once what is written has gone out. A client may still be sending
   * a body nobody reads; it is read and dropped for a while, so that our FIN
   * does not turn into a reset that destroys the answer in flight.
   */
  private closeAfterWrite() {
    this.state = "closing";
    this.buffer = undefined;
    this.transport.resume();
    this.transport.shutdown();
    this.lingerTimer = setTimeout(() => this.transport.destroy(), LINGER_MS);
  }

  /**
   * The client closed its side. As nginx does, that is taken as the client
   * leaving: an answer in flight is abandoned (logged 499) and the target's
   * request cancelled, rather than kept streaming to nobody. With nothing in
   * flight the connection just closes (a FIN, not a reset).
   */
  private onPeerEnd() {
    if (this.idle || this.state === "closing") this.transport.end();
    else this.transport.destroy();
  }

  private onClose() {
    if (this.state === "closed") return;
    const wasTunnel = this.state === "tunnel";
    this.state = "closed";
    clearTimeout(this.lingerTimer);
    if (wasTunnel) return;
    const gone = new ClientGone();
    this.body?.fail(gone);
    this.request?.gone.fire(gone);
    this.writer?.abort(gone);
    // A reply whose last bytes were still queued: it ends here, short.
    const flushed = this.onFlushed;
    this.onFlushed = undefined;
    flushed?.();
    this.owner.closed(this);
  }

  /** The head timeout passed: a partial head is answered 408, an idle connection just closed. */
  timeout() {
    if (this.state !== "head") return;
    if (this.buffer?.length) return this.refuse(408, "request head not complete in time");
    this.closeIdle();
  }

  /**
   * Graceful stop: a busy connection closes after its answer (which says
   * `Connection: close`, unless its head had already gone out: then after
   * the next one). An idle connection gets IDLE_GRACE_MS for a next request
   * and is then closed.
   */
  shutdown() {
    if (this.idle) this.deadline = Math.min(this.deadline, Date.now() + IDLE_GRACE_MS);
  }

  /**
   * An idle connection ends with a FIN, and what the client still sends is
   * read and dropped until it closes too: a request it sent just then finds
   * the connection closed cleanly, never reset, and may be resent (RFC 9112 §9.3.1).
   */
  private closeIdle() {
    this.closeAfterWrite();
  }

  destroy() {
    this.transport.destroy();
  }
}

/**
 * Writes one reply body to the client: chunks as they come (chunk-encoded
 * when the connection needs it), with the head in front of the first one.
 * A body that breaks off cuts the connection, so the client never takes a
 * truncated response for a whole one.
 */
class BodyWriter implements BodySink {
  private head: string | undefined;
  private bytes = 0;
  private over = false;

  private readonly transport: Transport;

  constructor(
    private readonly connection: Http1Connection,
    readonly reply: Reply,
    readonly stream: BodySource,
    head: string,
    private readonly encode: boolean,
    readonly keepAlive: boolean,
  ) {
    this.head = head;
    this.transport = connection.transport;
  }

  private send(data: Uint8Array): boolean {
    const head = this.head;
    if (!head) return this.transport.write(data);
    this.head = undefined;
    return this.transport.write(withHead(head, data));
  }

  /** After the stream's start: the head goes out now if no chunk took it, so an event stream's client sees it open. */
  started() {
    if (this.head && !this.over) this.send(EMPTY);
  }

  data(chunk: Uint8Array): boolean {
    if (this.over) return false;
    this.bytes += chunk.byteLength;
    return this.send(this.encode ? encodeChunk(chunk) : chunk);
  }

  end() {
    if (this.over) return;
    this.over = true;
    if (this.encode) this.send(LAST_CHUNK);
    else if (this.head) this.send(EMPTY);
    const stream = this.stream;
    if (stream instanceof UpstreamBody && stream.raw) this.bytes = stream.payloadBytes;
    this.connection.bodyWritten(this, { bytes: this.bytes });
  }

  error(error: Error) {
    if (this.over) return;
    this.over = true;
    this.transport.destroy();
    this.connection.bodyWritten(this, { bytes: this.bytes, error: error.message });
  }

  /** The client went away. */
  abort(reason: Error) {
    if (this.over) return;
    this.over = true;
    this.stream.cancel(reason);
    this.connection.bodyWritten(this, { bytes: this.bytes, error: reason.message });
  }
}

const EMPTY = new Uint8Array(0);

/** A head (latin1 text) and what follows it, in one buffer: one write, one TCP segment for a small answer. */
function withHead(head: string, body: Uint8Array | undefined): Buffer {
  const length = Buffer.byteLength(head, "latin1");
  const out = Buffer.allocUnsafe(length + (body?.byteLength ?? 0));
  out.write(head, 0, "latin1");
  if (body?.byteLength) out.set(body, length);
  return out;
}
