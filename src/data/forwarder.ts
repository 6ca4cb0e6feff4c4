// Forwards one request to one target and turns the answer into a Reply: the
// app's status, headers and body as they come (the body streams, with
// backpressure both ways), a WebSocket tunnel after a 101, or the status of
// the proxy's own error page. The request counts as in flight on its target
// until its reply has been written, so draining waits for downloads too.
import type { Fields } from "../http/fields.ts";
import { BodyTooLarge, bufferBody, type BufferedBody } from "../proxy/buffer.ts";
import { stripHopByHop, type UpstreamHeaders } from "../proxy/headers.ts";
import { DrainCancelled, TargetLeaving, type InFlight, type Target } from "../service/target.ts";
import type { BodySource } from "./body.ts";
import { MalformedBody } from "./client-body.ts";
import type { Reply, SentOutcome } from "./reply.ts";
import { ClientGone, type ProxyRequest } from "./request.ts";
import { TargetFailed, TargetTimeout, UpstreamExchange, type ExchangeOwner, type UpstreamPool, type UpstreamResponse } from "./upstream.ts";
import type { WebSocketTunnel } from "./websocket-tunnel.ts";

export interface Buffering {
  requests: boolean;
  responses: boolean;
  memory: number;
  maxRequestBody: number;
  maxResponseBody: number;
}

export interface Forward {
  req: ProxyRequest;
  target: Target;
  /** Path and raw query for the target (after prefix stripping). */
  pathAndQuery: string;
  /** The request's header lines for the target (without body framing). */
  headers: UpstreamHeaders;
  timeoutMs: number;
  buffering?: Buffering;
  /** Called once the reply is done, with what was sent; not called for a failure (see ForwardFailure). */
  done(outcome: SentOutcome & { status: number; headers: Fields }): void;
}

/** The forward failed before any answer: the proxy answers with this status. */
export interface ForwardFailure {
  failed: number;
  reason: string;
}

/** Methods a target may safely receive twice (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** A buffered response over --max-response-body (502). */
class ResponseTooLarge extends Error {
  override name = "ResponseTooLarge";
}

/** Maps why an exchange failed to the status the client gets. */
function classify(error: unknown): ForwardFailure {
  if (error instanceof TargetTimeout) return { failed: 504, reason: "target timeout" };
  if (error instanceof DrainCancelled) return { failed: 504, reason: "cancelled by drain timeout" };
  if (error instanceof TargetLeaving) return { failed: 504, reason: "cancelled by drain" };
  if (error instanceof ClientGone) return { failed: 499, reason: "client disconnected" };
  if (error instanceof MalformedBody) return { failed: 400, reason: `malformed request body: ${error.message}` };
  if (error instanceof BodyTooLarge) return { failed: 413, reason: "request body too large" };
  if (error instanceof ResponseTooLarge) return { failed: 502, reason: "response body too large" };
  if (error instanceof TargetFailed) return { failed: 502, reason: error.message };
  return { failed: 502, reason: `target failed: ${(error as Error)?.message ?? "unknown error"}` };
}

/** The request head for the target; `framing` is a Content-Length or Transfer-Encoding line, or "". */
function requestHead(method: string, pathAndQuery: string, headers: UpstreamHeaders, framing: string): Uint8Array {
  return Buffer.from(`${method} ${pathAndQuery} HTTP/1.1\r\n${headers.lines}${framing}\r\n`, "latin1");
}

/**
 * Sends the request and calls `respond` once with the Reply (or the failure).
 * Without buffering nothing here waits for the event loop: the reply is
 * handed on from the target socket's own callback.
 */
export function forward(pool: UpstreamPool, f: Forward, respond: (result: Reply | ForwardFailure) => void) {
  new Forwarding(pool, f, respond).start();
}

/**
 * One forward in progress: it is what the target's in-flight set holds, what
 * the exchange reports to, and what the reply reports back to when written.
 */
class Forwarding implements InFlight, ExchangeOwner {
  readonly websocket: boolean;
  /** What stops the forward now (the exchange, the buffering, the tunnel), for `cancel`. */
  private stop: (reason: Error) => void = () => {};
  private over = false;
  private buffered: BufferedBody | undefined;
  private forgetClient: () => void = () => {};
  /** The target's status, once it has answered. */
  private status = 0;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly f: Forward,
    private readonly respond: (result: Reply | ForwardFailure) => void,
  ) {
    this.websocket = f.req.websocket;
  }

  start() {
    const { req, target } = this.f;
    target.begin(this);
    if (req.gone.reason) return this.failure(req.gone.reason);
    this.forgetClient = req.gone.on((reason) => this.cancel(reason));
    const buffering = this.f.buffering;
    if (!buffering?.requests || !req.body) return this.send(req.body);
    const body = req.body;
    this.stop = (reason) => {
      body.cancel(reason);
      this.failure(reason);
    };
    bufferBody(body, buffering.memory, buffering.maxRequestBody).then((buffered) => {
      if (this.over) return buffered.dispose();
      this.buffered = buffered;
      this.send(buffered.source);
    }, (error) => this.failure(error));
  }

  /** The drain deadline, the target leaving, or the client leaving. */
  cancel(reason: Error) {
    this.stop(reason);
  }

  private send(body: BodySource | null) {
    const { req, target } = this.f;
    const chunked = body !== null && body.length === undefined;
    // A client's Content-Length is among the header lines; a buffered chunked upload gets one.
    const framing = chunked ? "Transfer-Encoding: chunked\r\n" : body && !req.headers.has("content-length") ? `Content-Length: ${body.length}\r\n` : "";
    const exchange = new UpstreamExchange(
      this.pool,
      target.address,
      {
        method: req.method,
        head: requestHead(req.method, this.f.pathAndQuery, this.f.headers, framing),
        body,
        chunked,
        timeoutMs: this.f.timeoutMs,
        retryable: body === null && IDEMPOTENT.has(req.method),
      },
      this,
    );
    this.stop = (reason) => exchange.cancel(reason);
    exchange.start();
  }

  /** The forward failed before any answer. */
  failure(error: unknown) {
    if (this.over) return;
    this.over = true;
    this.buffered?.dispose();
    this.forgetClient();
    this.f.target.end(this);
    this.respond(classify(error));
  }

  /** The target answered: its head is in, its body follows. */
  response(response: UpstreamResponse) {
    this.buffered?.dispose();
    const { head } = response;
    this.status = head.status;
    if (response.upgraded) return this.upgraded(response);
    const headers = stripHopByHop(head.fields);
    const body = response.body;
    // Cut by the drain deadline (or the client leaving): the client's connection ends short.
    this.stop = (reason) => body?.fail(reason);
    const eventStream = headers.get("content-type")?.startsWith("text/event-stream") ?? false;
    // Event streams are never buffered: they are meant to arrive as produced.
    if (!this.f.buffering?.responses || !body || eventStream) {
      return this.respond({ status: head.status, reason: head.reason, headers, body: body ?? null, chunked: body?.chunked, done: (o) => this.sent(o, headers) });
    }
    bufferBody(body, this.f.buffering.memory, this.f.buffering.maxResponseBody).then(
      (whole) => {
        headers.set("Content-Length", String(whole.size));
        const done = (outcome: SentOutcome) => {
          whole.dispose();
          this.sent(outcome, headers);
        };
        this.respond({ status: head.status, reason: head.reason, headers, body: whole.source, done });
      },
      (error) => this.failure(error instanceof BodyTooLarge ? new ResponseTooLarge() : error),
    );
  }

  /** 101: the reply switches the client's connection to a tunnel. */
  private upgraded(response: UpstreamResponse) {
    const { head } = response;
    const { transport, initial } = response.upgraded!;
    if (!this.websocket) {
      transport.destroy();
      return this.failure(new TargetFailed("target switched protocols unasked"));
    }
    const headers = stripHopByHop(head.fields, true);
    const forwarding = this;
    this.respond({
      status: 101,
      reason: head.reason,
      headers,
      body: null,
      upgrade: {
        transport,
        initial,
        opened(tunnel: WebSocketTunnel) {
          // From here the client leaving is the tunnel's business.
          forwarding.forgetClient();
          forwarding.stop = (reason) => tunnel.close(1001, reason instanceof TargetLeaving ? "target drained" : "going away");
        },
      },
      done: (outcome) => this.sent(outcome, headers),
    });
  }

  /** The reply has been written (or has failed). */
  private sent(outcome: SentOutcome, headers: Fields) {
    if (this.over) return;
    this.over = true;
    this.forgetClient();
    this.f.target.end(this);
    this.f.done({ bytes: outcome.bytes, error: outcome.error, status: this.status, headers });
  }
}
