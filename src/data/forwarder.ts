// Forwards one request to one target and answers with the app's response: its
// status, headers and body as they come (the body streams, with backpressure
// both ways), a WebSocket tunnel after a 101, or the proxy's error page when
// the target fails. The request counts as in flight on its target until its
// reply has been written, so draining waits for downloads too.
import type { Fields } from "../http/fields.ts";
import { BodyTooLarge, bufferBody, limitBody, type BufferedBody } from "../proxy/buffer.ts";
import { scopeSetCookie, type CookieScope } from "../proxy/cookie-scope.ts";
import { errorPage, ERROR_PAGE_HEADERS, type CustomPages } from "../proxy/error-pages.ts";
import { stripHopByHop, type UpstreamHeaders } from "../proxy/headers.ts";
import { logRequest, type RequestLog } from "../proxy/request-log.ts";
import { DrainCancelled, TargetLeaving, type InFlight, type Target } from "../service/target.ts";
import type { BodySource } from "./body.ts";
import { MalformedBody } from "./client-body.ts";
import { Answer, type Reply, type Responder, type SentOutcome, type Upgrade } from "./reply.ts";
import { ClientGone, type Cancellable, type ProxyRequest } from "./request.ts";
import { TargetFailed, TargetTimeout, UpstreamExchange, type ExchangeOwner, type UpstreamBody, type UpstreamPool, type UpstreamResponse } from "./upstream.ts";
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
  buffering: Buffering | undefined;
  /** --max-request-body (0: none). */
  maxRequestBody: number;
  /** The request's log entry; the reply is logged once written. */
  entry: RequestLog;
  /** A Set-Cookie value for the client when the app answers (writer affinity), if any. */
  setCookie: string | undefined;
  /** Where the app's cookies are scoped (--scope-cookie-paths), if anywhere. */
  cookieScope: CookieScope | undefined;
  /** The service's own error pages, if it has them. */
  pages: CustomPages | undefined;
}

/** The app's Set-Cookie headers, scoped to the service's path prefix. */
function scopeCookies(headers: Fields, scope: CookieScope) {
  const cookies = headers.getAll("set-cookie");
  if (cookies.length === 0) return;
  headers.delete("set-cookie");
  for (const cookie of cookies) headers.append("Set-Cookie", scopeSetCookie(cookie, scope));
}

/** Methods a target may safely receive twice (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);

/** A buffered response over --max-response-body (502). */
class ResponseTooLarge extends Error {
  override name = "ResponseTooLarge";
}

/** Maps why a forward failed to the status the client gets. */
function classify(error: unknown): { status: number; reason: string } {
  if (error instanceof TargetTimeout) return { status: 504, reason: "target timeout" };
  if (error instanceof DrainCancelled) return { status: 504, reason: "cancelled by drain timeout" };
  if (error instanceof TargetLeaving) return { status: 504, reason: "cancelled by drain" };
  if (error instanceof ClientGone) return { status: 499, reason: "client disconnected" };
  if (error instanceof MalformedBody) return { status: 400, reason: `malformed request body: ${error.message}` };
  if (error instanceof BodyTooLarge) return { status: 413, reason: "request body too large" };
  if (error instanceof ResponseTooLarge) return { status: 502, reason: "response body too large" };
  if (error instanceof TargetFailed) return { status: 502, reason: error.message };
  return { status: 502, reason: `target failed: ${(error as Error)?.message ?? "unknown error"}` };
}

/** The request head for the target; `framing` is a Content-Length or Transfer-Encoding line, or "". */
function requestHead(method: string, pathAndQuery: string, headers: UpstreamHeaders, framing: string): Uint8Array {
  return Buffer.from(`${method} ${pathAndQuery} HTTP/1.1\r\n${headers.lines}${framing}\r\n`, "latin1");
}

/**
 * Sends the request; `responder` gets the reply once. Without buffering
 * nothing here waits for the event loop: the reply is handed on from the
 * target socket's own callback.
 */
export function forward(pool: UpstreamPool, f: Forward, responder: Responder) {
  new Forwarding(pool, f, responder).start();
}

/** Where a forward is, and so what `cancel` stops. */
type Phase =
  | { kind: "buffering"; body: BodySource }
  | { kind: "exchange"; exchange: UpstreamExchange }
  | { kind: "body"; body: UpstreamBody | undefined }
  | { kind: "tunnel"; tunnel: WebSocketTunnel | undefined }
  | { kind: "over" };

/**
 * One forward in progress. It is what the target's in-flight set holds, what
 * the exchange reports to, and, once the app has answered, the Reply itself.
 */
class Forwarding implements InFlight, Cancellable, ExchangeOwner, Reply {
  readonly websocket: boolean;
  private phase: Phase = { kind: "over" };
  private bufferedRequest: BufferedBody | undefined;
  private bufferedResponse: BufferedBody | undefined;
  /** Answered (the reply written, or the failure reported): nothing more happens. */
  private finished = false;
  // The Reply, filled in when the target answers.
  status = 0;
  reason = "";
  headers!: Fields;
  body: BodySource | null = null;
  chunked: boolean | undefined;
  upgrade: Upgrade | undefined;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly f: Forward,
    private readonly responder: Responder,
  ) {
    this.websocket = f.req.websocket;
  }

  start() {
    const { req, target } = this.f;
    target.begin(this);
    req.gone.listen(this);
    if (req.gone.reason) return;
    const buffering = this.f.buffering;
    if (!buffering?.requests || !req.body) {
      // A declared length over the limit was refused before; an upload of unknown length is stopped where it passes it.
      const limit = this.f.maxRequestBody;
      return this.send(req.body && limit > 0 && req.body.length === undefined ? limitBody(req.body, limit) : req.body);
    }
    const body = req.body;
    this.phase = { kind: "buffering", body };
    bufferBody(body, buffering.memory, buffering.maxRequestBody).then((buffered) => {
      if (this.phase.kind !== "buffering") return buffered.dispose();
      this.bufferedRequest = buffered;
      this.send(buffered.source);
    }, (error) => this.failure(error));
  }

  /** Stopped by the drain deadline, the target leaving, or the client leaving. */
  cancel(reason: Error) {
    const phase = this.phase;
    switch (phase.kind) {
      case "buffering":
        phase.body.cancel(reason);
        return this.failure(reason);
      case "exchange":
        return phase.exchange.cancel(reason);
      // The client's connection ends short.
      case "body":
        return phase.body?.fail(reason);
      case "tunnel":
        return phase.tunnel?.close(1001, reason instanceof TargetLeaving ? "target drained" : "going away");
      default:
        // Not started yet: the client left before the forward began.
        this.failure(reason);
    }
  }

  private send(body: BodySource | null) {
    const { req, target } = this.f;
    const chunked = body !== null && body.length === undefined;
    // The framing comes from the body as the proxy reads it, never from the
    // client's header lines; a request that declared an empty body keeps saying so.
    const framing = chunked
      ? "Transfer-Encoding: chunked\r\n"
      : body
        ? `Content-Length: ${body.length}\r\n`
        : req.headers.has("content-length")
          ? "Content-Length: 0\r\n"
          : "";
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
    this.phase = { kind: "exchange", exchange };
    exchange.start();
  }

  /** The forward failed before any answer: the proxy's error page (nothing, if the client is gone). */
  failure(error: unknown) {
    if (this.finished) return;
    this.end();
    const { status, reason } = classify(error);
    this.f.target.tally?.record(status, this.f.entry.req.path ?? "", reason);
    if (status === 499) {
      logRequest(this.f.entry, { status: 499, bytes: 0, error: reason });
      return this.responder.respond(new Answer(499, [], ""));
    }
    this.responder.respond(new Answer(status, ERROR_PAGE_HEADERS, errorPage(status, { pages: this.f.pages }), this.f.entry, reason));
  }

  /**
   * After a write the client's reads go to the writers for a while (README
   * "Routing"), unless the app says this write needs none:
   * `X-Writer-Affinity: false` on its response. That header is for the proxy
   * and is not passed on.
   */
  private pinToWriters(headers: Fields, cookie: string) {
    const affinity = headers.get("x-writer-affinity");
    if (affinity !== undefined) headers.delete("x-writer-affinity");
    if (affinity?.trim().toLowerCase() !== "false") headers.append("Set-Cookie", cookie);
  }

  /** The target answered: its head is in, its body follows. */
  response(response: UpstreamResponse) {
    this.bufferedRequest?.dispose();
    const { head } = response;
    this.status = head.status;
    this.reason = head.reason;
    if (response.upgraded) return this.upgraded(response);
    const headers = (this.headers = stripHopByHop(head.fields));
    const body = response.body;
    this.phase = { kind: "body", body };
    if (this.f.cookieScope) scopeCookies(headers, this.f.cookieScope);
    if (this.f.setCookie) this.pinToWriters(headers, this.f.setCookie);
    const buffering = this.f.buffering;
    // Event streams are never buffered: they are meant to arrive as produced.
    if (!buffering?.responses || !body || headers.get("content-type")?.startsWith("text/event-stream")) {
      this.body = body ?? null;
      this.chunked = body?.chunked;
      return this.responder.respond(this);
    }
    bufferBody(body, buffering.memory, buffering.maxResponseBody).then(
      (whole) => {
        this.bufferedResponse = whole;
        headers.set("Content-Length", String(whole.size));
        this.body = whole.source;
        this.responder.respond(this);
      },
      (error) => this.failure(error instanceof BodyTooLarge ? new ResponseTooLarge() : error),
    );
  }

  /** 101: the reply switches the client's connection to a tunnel. */
  private upgraded(response: UpstreamResponse) {
    const { transport, initial } = response.upgraded!;
    if (!this.websocket) {
      transport.destroy();
      return this.failure(new TargetFailed("target switched protocols unasked"));
    }
    this.headers = stripHopByHop(response.head.fields, true);
    const phase: Phase & { kind: "tunnel" } = { kind: "tunnel", tunnel: undefined };
    this.phase = phase;
    this.upgrade = {
      transport,
      initial,
      opened: (tunnel) => {
        phase.tunnel = tunnel;
        // From here the client leaving is the tunnel's business.
        this.f.req.gone.listen(undefined);
      },
    };
    this.responder.respond(this);
  }

  /** The reply has been written (or has failed): logged, and no longer in flight. */
  done(outcome: SentOutcome) {
    if (this.finished) return;
    this.end();
    this.bufferedResponse?.dispose();
    this.f.target.tally?.record(this.status, this.f.entry.req.path ?? "");
    logRequest(this.f.entry, { status: this.status, bytes: outcome.bytes, error: outcome.error, headers: this.headers });
  }

  private end() {
    this.finished = true;
    this.phase = { kind: "over" };
    this.bufferedRequest?.dispose();
    this.f.req.gone.listen(undefined);
    this.f.target.end(this);
  }
}
