// The connections to targets: a keep-alive pool per target address, and one
// exchange (request out, response head back, body relayed) at a time on each.
// Written on Bun's TCP sockets rather than fetch: the request target and the
// headers go out exactly as the proxy means them (fetch collapses a leading
// `//` and adds its own User-Agent and Accept), the response head arrives as
// the app wrote it (Content-Length, reason phrase), WebSocket upgrades become
// a plain byte tunnel, and there is no per-process cap on requests in flight.
import type { Socket } from "bun";
import { ChunkedDecoder, ChunkedError, encodeChunk, LAST_CHUNK } from "../http/chunked.ts";
import { parseResponseHead, type ResponseHead } from "../http/response-head.ts";
import { log } from "../log.ts";
import type { BodySink, BodySource } from "./body.ts";
import { SocketTransport, socketHandlers, type TransportEvents } from "./transport.ts";

/** Idle pooled connections are closed after this long; apps commonly close theirs after 5 s or more. */
const IDLE_TIMEOUT_MS = 4_000;
const MAX_IDLE_PER_TARGET = 256;
const MAX_RESPONSE_HEAD = 64 * 1024;
const HEAD_END = Buffer.from("\r\n\r\n");
const BARE_LF_END = Buffer.from("\n\n");
/** Body bytes held before the reply starts; past this the socket is paused. */
const PENDING_LIMIT = 64 * 1024;

/** The target did not answer in time (504). */
export class TargetTimeout extends Error {
  override name = "TargetTimeout";
}
/** The target refused, reset or closed the connection, or answered with something that is not HTTP (502). */
export class TargetFailed extends Error {
  override name = "TargetFailed";
}

export interface UpstreamRequest {
  method: string;
  /** The serialized request head, blank line included. */
  head: Uint8Array;
  body: BodySource | null;
  /** How the body goes out: as is (its length is in the head) or chunked. */
  chunked: boolean;
  /** The wait for the response head (--target-timeout). */
  timeoutMs: number;
  /** Safe to send again on a fresh connection if a reused one turns out to be closed. */
  retryable: boolean;
}

export interface UpstreamResponse {
  head: ResponseHead;
  /** The response body; undefined when it has none. */
  body: UpstreamBody | undefined;
  /** For 101 Switching Protocols: the connection, now a tunnel, and what the target sent after the head. */
  upgraded?: { transport: SocketTransport; initial: Uint8Array | undefined };
}

/** Where a target is: `host:port`, `[v6]:port`. */
function endpoint(address: string): { hostname: string; port: number } {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon);
  return { hostname: host.startsWith("[") ? host.slice(1, -1) : host, port: Number(address.slice(colon + 1)) };
}

/**
 * One connection to a target, kept across exchanges. It receives its
 * socket's events and hands them to the exchange in progress; between
 * exchanges it waits in the pool, and anything the target says or does then
 * (data, a close) takes it out.
 */
class TargetConnection implements TransportEvents {
  exchange: UpstreamExchange | undefined;
  idleSince = 0;

  constructor(
    readonly transport: SocketTransport,
    readonly address: string,
    private readonly pool: UpstreamPool,
  ) {
    transport.events = this;
  }

  data(chunk: Uint8Array) {
    if (this.exchange) return this.exchange.onData(chunk);
    this.transport.destroy();
  }

  drain() {
    this.exchange?.onDrain();
  }

  end() {
    if (this.exchange) return this.exchange.onEnd();
    this.transport.destroy();
  }

  close() {
    if (this.exchange) return this.exchange.onClose();
    this.pool.forget(this);
  }
}

export class UpstreamPool {
  private readonly idle = new Map<string, TargetConnection[]>();
  private sweeper: ReturnType<typeof setInterval> | undefined;

  /** A pooled connection to `address`, if one is idle. */
  reuse(address: string): TargetConnection | undefined {
    const list = this.idle.get(address);
    while (list?.length) {
      const connection = list.pop()!;
      if (!connection.transport.closed) return connection;
    }
    return undefined;
  }

  /** A new connection to `address`; rejects with TargetFailed when it cannot connect. */
  async connect(address: string): Promise<TargetConnection> {
    const { hostname, port } = endpoint(address);
    try {
      const socket = await Bun.connect<SocketTransport>({
        hostname,
        port,
        allowHalfOpen: true,
        socket: TARGET_SOCKET,
      });
      return new TargetConnection(socket.data, address, this);
    } catch (error) {
      const e = error as { code?: string; message?: string };
      throw new TargetFailed(`target failed: ${e.code ?? e.message ?? "cannot connect"}`);
    }
  }

  /** Keeps a connection whose exchange ended cleanly for the next request to its target. */
  release(connection: TargetConnection) {
    const transport = connection.transport;
    if (transport.closed) return;
    connection.exchange = undefined;
    let list = this.idle.get(connection.address);
    if (!list) this.idle.set(connection.address, (list = []));
    if (list.length >= MAX_IDLE_PER_TARGET) return transport.destroy();
    connection.idleSince = Date.now();
    transport.resume();
    list.push(connection);
    this.sweeper ??= setInterval(() => this.sweep(), 1_000);
  }

  /** A pooled connection closed by its target. */
  forget(connection: TargetConnection) {
    const list = this.idle.get(connection.address);
    const i = list?.indexOf(connection) ?? -1;
    if (i !== -1) list!.splice(i, 1);
  }

  private sweep() {
    const now = Date.now();
    for (const [address, list] of this.idle) {
      for (let i = list.length - 1; i >= 0; i--) {
        if (now - list[i]!.idleSince > IDLE_TIMEOUT_MS) list.splice(i, 1)[0]!.transport.destroy();
      }
      if (!list.length) this.idle.delete(address);
    }
    if (!this.idle.size) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Closes every idle connection (shutdown). */
  close() {
    for (const list of this.idle.values()) for (const { transport } of list) transport.destroy();
    this.idle.clear();
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}

/** The socket handlers of every connection to a target (one object, shared). */
const TARGET_SOCKET = {
  ...socketHandlers,
  open(socket: Socket<SocketTransport>) {
    socket.data = new SocketTransport(socket);
    socket.setNoDelay(true);
  },
  connectError() {},
};

/**
 * The exchanges waiting for a response head, checked against their deadlines
 * every 50 ms: one timer for all of them rather than one per request.
 */
const awaitingHeads = {
  exchanges: new Set<UpstreamExchange>(),
  timer: undefined as ReturnType<typeof setInterval> | undefined,
  watch(exchange: UpstreamExchange) {
    this.exchanges.add(exchange);
    this.timer ??= setInterval(() => this.sweep(), 50);
  },
  forget(exchange: UpstreamExchange) {
    this.exchanges.delete(exchange);
  },
  sweep() {
    const now = performance.now();
    for (const exchange of this.exchanges) if (exchange.deadline <= now) exchange.timedOut();
    if (this.exchanges.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  },
};

/** Who learns how an exchange went: the response once its head is in, or why it failed. */
export interface ExchangeOwner {
  response(response: UpstreamResponse): void;
  failure(error: Error): void;
}

/**
 * One request to one target. The owner hears once: the response as soon as
 * its head has arrived (the body follows as a BodySource), or the error
 * (TargetTimeout, TargetFailed, or the reason given to `cancel()`). That
 * happens in the socket's own callback, so the answer goes on to the client
 * without waiting for another turn of the event loop.
 */
export class UpstreamExchange implements BodySink {
  private connection: TargetConnection | undefined;
  /** When the response head must have arrived (performance.now() ms). */
  deadline = 0;
  private headBuffer: Buffer | undefined;
  private settled = false;
  private cancelled: Error | undefined;
  private body: UpstreamBody | undefined;
  /** The request body has been sent whole. */
  private requestSent = false;
  private responseDone = false;
  private keepAlive = false;
  private reused = false;
  private retried = false;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly address: string,
    private readonly request: UpstreamRequest,
    private readonly owner: ExchangeOwner,
  ) {}

  start() {
    this.deadline = performance.now() + this.request.timeoutMs;
    awaitingHeads.watch(this);
    const pooled = this.pool.reuse(this.address);
    if (pooled) return this.use(pooled, true);
    this.connectNew();
  }

  private connectNew() {
    this.pool.connect(this.address).then(
      (connection) => (this.settled ? connection.transport.destroy() : this.use(connection, false)),
      (error: Error) => this.fail(error),
    );
  }

  /** Stops the exchange (client gone, drain deadline): the connection is closed. */
  cancel(reason: Error) {
    if (this.cancelled) return;
    this.cancelled = reason;
    this.request.body?.cancel(reason);
    this.connection?.transport.destroy();
    this.fail(reason);
    this.body?.fail(reason);
  }

  private use(connection: TargetConnection, reused: boolean) {
    this.connection = connection;
    this.reused = reused;
    connection.exchange = this;
    connection.transport.write(this.request.head);
    if (this.request.body) this.request.body.start(this);
    else this.requestSent = true;
  }

  // The request body, as it comes from the client.
  data(chunk: Uint8Array): boolean {
    return this.connection!.transport.write(this.request.chunked ? encodeChunk(chunk) : chunk);
  }

  end() {
    if (this.request.chunked) this.connection!.transport.write(LAST_CHUNK);
    this.requestSent = true;
    if (this.responseDone) this.finish();
  }

  /** The client's body broke off: the target must not take a truncated request for a whole one. */
  error(error: Error) {
    this.cancel(error);
  }

  // The target's socket, through its TargetConnection.
  onDrain() {
    this.request.body?.resume();
  }

  onData(chunk: Uint8Array) {
    if (this.body) return this.body.push(chunk);
    this.headBuffer = this.headBuffer ? Buffer.concat([this.headBuffer, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.parseHead();
  }

  private parseHead() {
    const buffer = this.headBuffer!;
    const end = buffer.indexOf(HEAD_END);
    if (end === -1) {
      if (buffer.length > MAX_RESPONSE_HEAD) this.fail(new TargetFailed("target failed: response head too large"));
      // Lines ended by a bare LF: not HTTP/1.1 as the proxy reads it, and it would wait in vain.
      else if (buffer.indexOf(BARE_LF_END) !== -1) this.fail(new TargetFailed("target failed: malformed response"));
      return;
    }
    const head = parseResponseHead(buffer.toString("latin1", 0, end), this.request.method);
    if (!head) return this.fail(new TargetFailed("target failed: malformed response"));
    const rest = buffer.length > end + 4 ? buffer.subarray(end + 4) : undefined;
    this.headBuffer = undefined;
    // Interim answers (100 Continue, 103 Early Hints) are not relayed; the final one follows.
    if (head.status >= 100 && head.status < 200 && head.status !== 101) {
      if (rest) this.onData(rest);
      return;
    }
    awaitingHeads.forget(this);
    this.settled = true;
    const connection = this.connection!;
    if (head.status === 101) {
      this.responseDone = true;
      connection.exchange = undefined;
      return this.report({ head, body: undefined, upgraded: { transport: connection.transport, initial: rest } });
    }
    if (head.body.kind === "none") {
      this.report({ head, body: undefined });
      this.complete(head.keepAlive && !rest); // bytes beyond a complete response: not a connection to reuse
      return;
    }
    this.body = new UpstreamBody(head, connection.transport, this);
    // What came with the head is there before the reply starts, so a small answer goes out in one write.
    if (rest) this.body.push(rest);
    this.report({ head, body: this.body });
  }

  /** Hands the response on; a bug downstream is logged, never thrown into the socket's callback. */
  private report(response: UpstreamResponse) {
    try {
      this.owner.response(response);
    } catch (error) {
      log.error("Unhandled error", { kind: "request", error: (error as Error)?.message ?? String(error) });
    }
  }

  /** The response is complete; the connection is reused once the request body has been sent too. */
  complete(keepAlive: boolean) {
    this.responseDone = true;
    this.keepAlive = keepAlive;
    // An answer before the whole upload (a 413 from the app): the rest is not sent.
    if (!this.requestSent) {
      this.request.body?.cancel(new Error("the target answered before the request body was sent"));
      this.connection?.transport.destroy();
      return;
    }
    this.finish();
  }

  private finish() {
    const connection = this.connection;
    if (!connection || connection.transport.closed) return;
    if (this.keepAlive && !this.cancelled) this.pool.release(connection);
    else connection.transport.destroy();
  }

  onEnd() {
    if (this.body) return this.body.ended();
    this.onClose();
  }

  onClose() {
    if (this.body) return this.body.fail(new TargetFailed("target closed the connection mid-response"));
    if (this.settled || this.cancelled) return;
    // A pooled connection the target had closed just as it was reused:
    // nothing was answered, so a request that can be repeated goes out again.
    if (this.reused && this.request.retryable && !this.headBuffer && !this.retried) {
      this.retried = true;
      // The closing connection's remaining events are no longer this exchange's.
      const closing = this.connection;
      this.connection = undefined;
      if (closing) {
        closing.exchange = undefined;
        closing.transport.destroy();
      }
      return this.connectNew();
    }
    this.fail(new TargetFailed(this.headBuffer ? "target failed: connection closed mid-head" : "target failed: connection closed before answering"));
  }

  /** The deadline for the response head has passed (--target-timeout). */
  timedOut() {
    this.fail(new TargetTimeout("target timeout"));
  }

  private fail(error: Error) {
    if (this.settled) return;
    this.settled = true;
    awaitingHeads.forget(this);
    this.connection?.transport.destroy();
    this.request.body?.cancel(error);
    try {
      this.owner.failure(error);
    } catch (e) {
      log.error("Unhandled error", { kind: "request", error: (e as Error)?.message ?? String(e) });
    }
  }
}

/**
 * A response body as it comes from the target's socket, delimited by its
 * framing. For an HTTP/1.1 client a chunked body can be passed on as it is
 * (`raw`): the chunks are checked, not re-encoded.
 */
export class UpstreamBody implements BodySource {
  readonly length: number | undefined;
  readonly chunked: boolean;
  /** Deliver a chunked body still chunk-encoded (set before start). */
  raw = false;
  private sink: BodySink | undefined;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private remaining: number;
  private readonly decoder: ChunkedDecoder | undefined;
  private finished = false;
  private failure: Error | undefined;
  private endedEarly = false;

  private readonly keepAlive: boolean;

  constructor(
    head: ResponseHead,
    private readonly transport: SocketTransport,
    private readonly exchange: UpstreamExchange,
  ) {
    this.keepAlive = head.keepAlive;
    this.length = head.body.kind === "length" ? head.body.length : undefined;
    this.remaining = this.length ?? Infinity;
    this.chunked = head.body.kind === "chunked";
    this.decoder = this.chunked ? new ChunkedDecoder() : undefined;
  }

  /** Body bytes received, without the chunked framing. */
  get payloadBytes(): number {
    return this.decoder?.payloadBytes ?? (this.length ?? 0) - this.remaining;
  }

  /**
   * The whole body, if it has already arrived (a small answer usually comes
   * in the head's packet); the body is then done. Undefined otherwise, and
   * nothing changes.
   */
  takeWhole(): Uint8Array | undefined {
    if (this.sink || this.finished || this.length === undefined || this.pendingBytes < this.length) return undefined;
    let whole: Uint8Array = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const extra = whole.byteLength > this.length;
    if (extra) whole = whole.subarray(0, this.length);
    this.pending = [];
    this.remaining = 0;
    this.finished = true;
    // Bytes beyond a complete response: not a connection to reuse.
    this.exchange.complete(this.keepAlive && !extra);
    return whole;
  }

  start(sink: BodySink) {
    this.sink = sink;
    const pending = this.pending;
    this.pending = [];
    let full = false;
    for (const chunk of pending) full = !this.deliver(chunk) || full;
    if (this.failure) sink.error(this.failure);
    else if (this.endedEarly) this.ended();
    else if (this.pendingBytes > PENDING_LIMIT && !full && !this.finished) this.transport.resume();
    this.pendingBytes = 0;
  }

  resume() {
    if (!this.finished) this.transport.resume();
  }

  cancel() {
    if (this.finished) return;
    this.finished = true;
    this.transport.destroy();
  }

  /** Bytes from the socket. */
  push(chunk: Uint8Array) {
    if (this.finished) return;
    if (!this.sink) {
      // Held until the reply is written; a small answer is usually whole already.
      this.pending.push(chunk);
      this.pendingBytes += chunk.byteLength;
      if (this.pendingBytes > PENDING_LIMIT) this.transport.pause();
      return;
    }
    this.deliver(chunk);
  }

  /** Passes bytes on; false when the sink is full (the socket is then paused). */
  private deliver(chunk: Uint8Array): boolean {
    if (this.finished) return true;
    const sink = this.sink!;
    let full = false;
    if (this.decoder) {
      let used: number;
      try {
        used = this.raw
          ? this.decoder.feed(chunk)
          : this.decoder.feed(chunk, (data) => {
              if (!sink.data(data)) full = true;
            });
      } catch (error) {
        this.fail(new TargetFailed(`target failed: ${(error as ChunkedError).message}`));
        return true;
      }
      if (this.raw && !sink.data(used === chunk.length ? chunk : chunk.subarray(0, used))) full = true;
      if (this.decoder.done) return this.done(used === chunk.length), true;
    } else {
      const take = Math.min(chunk.length, this.remaining);
      this.remaining -= take;
      if (!sink.data(take === chunk.length ? chunk : chunk.subarray(0, take))) full = true;
      if (this.remaining === 0) return this.done(take === chunk.length), true;
    }
    if (full) this.transport.pause();
    return !full;
  }

  private done(clean: boolean) {
    this.finished = true;
    this.sink!.end();
    this.exchange.complete(this.keepAlive && clean);
  }

  /** The target finished sending: the end of a read-until-close body, or a truncated one. */
  ended() {
    if (this.finished) return;
    if (!this.sink) {
      this.endedEarly = true;
      return;
    }
    if (this.remaining === Infinity && !this.decoder) return this.done(false);
    this.fail(new TargetFailed("target closed the connection mid-response"));
  }

  fail(error: Error) {
    if (this.finished) return;
    if (!this.sink) {
      this.failure ??= error;
      return;
    }
    this.finished = true;
    this.transport.destroy();
    this.sink.error(error);
  }
}
