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
import type { Reply, SentOutcome } from "./reply.ts";
import { MalformedBody } from "./client-body.ts";
import { ClientGone, type ProxyRequest } from "./request.ts";
import { TargetFailed, TargetTimeout, UpstreamExchange, type UpstreamPool, type UpstreamResponse } from "./upstream.ts";
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

/** Maps why an exchange failed to the status the client gets. */
function classify(error: unknown): ForwardFailure {
  if (error instanceof TargetTimeout) return { failed: 504, reason: "target timeout" };
  if (error instanceof DrainCancelled) return { failed: 504, reason: "cancelled by drain timeout" };
  if (error instanceof TargetLeaving) return { failed: 504, reason: "cancelled by drain" };
  if (error instanceof ClientGone) return { failed: 499, reason: "client disconnected" };
  if (error instanceof MalformedBody) return { failed: 400, reason: `malformed request body: ${(error as Error).message}` };
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
  const { req, target } = f;
  const exchange: Exchange = { cancel: () => {} };
  const flight: InFlight = { websocket: req.websocket, cancel: (reason) => exchange.cancel(reason) };
  const finish = target.begin(flight);
  const forgetClient = req.gone.on((reason) => exchange.cancel(reason));
  let over = false;
  const failed = (error: unknown) => {
    if (over) return;
    over = true;
    forgetClient();
    finish();
    respond(classify(error));
  };
  if (!f.buffering?.requests || !req.body) return send(pool, f, req.body, exchange, { finish, forgetClient, failed }, respond);

  const body = req.body;
  exchange.cancel = (reason) => {
    body.cancel(reason);
    failed(reason);
  };
  bufferBody(body, f.buffering.memory, f.buffering.maxRequestBody).then((buffered) => {
    if (over) return buffered.dispose();
    send(pool, f, buffered.source, exchange, { finish, forgetClient, failed }, respond, buffered);
  }, failed);
}

/** How the exchange in progress is stopped (by the drain deadline or the client leaving); set as the forward goes on. */
interface Exchange {
  cancel(reason: Error): void;
}

interface Ending {
  /** The target's in-flight count is released. */
  finish(): void;
  forgetClient(): void;
  failed(error: unknown): void;
}

function send(pool: UpstreamPool, f: Forward, body: BodySource | null, exchange: Exchange, ending: Ending, respond: (result: Reply | ForwardFailure) => void, buffered?: BufferedBody) {
  const { req, target } = f;
  const chunked = body !== null && body.length === undefined;
  // A client's Content-Length is among the header lines; a buffered chunked upload gets one.
  const framing = chunked ? "Transfer-Encoding: chunked\r\n" : body && !req.headers.has("content-length") ? `Content-Length: ${body.length}\r\n` : "";
  const upstream = new UpstreamExchange(
    pool,
    target.address,
    {
      method: req.method,
      head: requestHead(req.method, f.pathAndQuery, f.headers, framing),
      body,
      chunked,
      timeoutMs: f.timeoutMs,
      retryable: body === null && IDEMPOTENT.has(req.method),
    },
    (result) => {
      buffered?.dispose();
      if (result instanceof Error) return ending.failed(result);
      reply(f, result, exchange, ending, respond);
    },
  );
  exchange.cancel = (reason) => upstream.cancel(reason);
  upstream.start();
}

/** Turns the target's response into a Reply. */
function reply(f: Forward, response: UpstreamResponse, exchange: Exchange, ending: Ending, respond: (result: Reply | ForwardFailure) => void) {
  const { head } = response;
  const end = (outcome: SentOutcome, headers: Fields) => {
    ending.forgetClient();
    ending.finish();
    f.done({ bytes: outcome.bytes, error: outcome.error, status: head.status, headers });
  };

  if (response.upgraded) {
    const { transport, initial } = response.upgraded;
    if (!f.req.websocket) {
      transport.destroy();
      return ending.failed(new TargetFailed("target switched protocols unasked"));
    }
    const headers = stripHopByHop(head.fields, true);
    return respond({
      status: 101,
      reason: head.reason,
      headers,
      body: null,
      upgrade: {
        transport,
        initial,
        opened(tunnel: WebSocketTunnel) {
          // From here the client leaving is the tunnel's business.
          ending.forgetClient();
          exchange.cancel = (reason) => tunnel.close(1001, reason instanceof TargetLeaving ? "target drained" : "going away");
        },
      },
      done: (outcome) => end(outcome, headers),
    });
  }

  const headers = stripHopByHop(head.fields);
  const body = response.body;
  // Cut by the drain deadline (or the client leaving): the client's connection ends short.
  exchange.cancel = (reason) => body?.fail(reason);
  const eventStream = headers.get("content-type")?.startsWith("text/event-stream") ?? false;
  // Event streams are never buffered: they are meant to arrive as produced.
  if (!f.buffering?.responses || !body || eventStream) {
    return respond({ status: head.status, reason: head.reason, headers, body: body ?? null, chunked: body?.chunked, done: (outcome) => end(outcome, headers) });
  }
  bufferBody(body, f.buffering.memory, f.buffering.maxResponseBody).then(
    (whole) => {
      headers.set("Content-Length", String(whole.size));
      respond({
        status: head.status,
        reason: head.reason,
        headers,
        body: whole.source,
        done: (outcome) => {
          whole.dispose();
          end(outcome, headers);
        },
      });
    },
    (error) => ending.failed(error instanceof BodyTooLarge ? new ResponseTooLarge() : error),
  );
}

/** A buffered response over --max-response-body (502). */
class ResponseTooLarge extends Error {
  override name = "ResponseTooLarge";
}
