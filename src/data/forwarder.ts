// Forwards one request to one target and turns the answer into a Reply: the
// app's status, headers and body as they come (the body streams, with
// backpressure both ways), a WebSocket tunnel after a 101, or the status of
// the proxy's own error page. The request counts as in flight on its target
// until its reply has been written, so draining waits for downloads too.
import type { Fields } from "../http/fields.ts";
import { BodyTooLarge, bufferBody, type BufferedBody } from "../proxy/buffer.ts";
import { withoutHopByHop } from "../proxy/headers.ts";
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
  /** The request headers for the target. */
  fields: Fields;
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
  if (error instanceof TargetFailed) return { failed: 502, reason: error.message };
  return { failed: 502, reason: `target failed: ${(error as Error)?.message ?? "unknown error"}` };
}

function requestHead(method: string, pathAndQuery: string, fields: Fields): Uint8Array {
  return Buffer.from(`${method} ${pathAndQuery} HTTP/1.1\r\n${fields.serialize()}\r\n`, "latin1");
}

export async function forward(pool: UpstreamPool, f: Forward): Promise<Reply | ForwardFailure> {
  const { req, target, fields } = f;
  let cancel: (reason: Error) => void = () => {};
  const flight: InFlight = { websocket: req.websocket, cancel: (reason) => cancel(reason) };
  const finish = target.begin(flight);

  let body: BodySource | null = req.body;
  let buffered: BufferedBody | undefined;
  if (f.buffering?.requests && body) {
    const gone = new Promise<never>((_, reject) => (cancel = reject));
    try {
      buffered = await Promise.race([bufferBody(body, f.buffering.memory, f.buffering.maxRequestBody), gone]);
    } catch (error) {
      body.cancel(error as Error);
      finish();
      return classify(error);
    }
    body = buffered.source;
    fields.set("Content-Length", String(buffered.size));
  }
  const chunked = body !== null && body.length === undefined;
  if (chunked) fields.set("Transfer-Encoding", "chunked");

  const exchange = new UpstreamExchange(pool, target.address, {
    method: req.method,
    head: requestHead(req.method, f.pathAndQuery, fields),
    body,
    chunked,
    timeoutMs: f.timeoutMs,
    retryable: body === null && IDEMPOTENT.has(req.method),
  });
  cancel = (reason) => exchange.cancel(reason);
  const forgetClient = req.gone.on((reason) => cancel(reason));
  let response: UpstreamResponse;
  try {
    response = await exchange.send();
  } catch (error) {
    forgetClient();
    buffered?.dispose();
    finish();
    return classify(error);
  }
  buffered?.dispose();

  const { head } = response;
  const end = (outcome: SentOutcome, headers: Fields) => {
    forgetClient();
    finish();
    f.done({ bytes: outcome.bytes, error: outcome.error, status: head.status, headers });
  };

  if (response.upgraded) {
    const { transport, initial } = response.upgraded;
    if (!req.websocket) {
      transport.destroy();
      forgetClient();
      finish();
      return { failed: 502, reason: "target switched protocols unasked" };
    }
    const headers = withoutHopByHop(head.fields, true);
    return {
      status: 101,
      reason: head.reason,
      headers,
      body: null,
      upgrade: {
        transport,
        initial,
        opened(tunnel: WebSocketTunnel) {
          // From here the client leaving is the tunnel's business.
          forgetClient();
          cancel = (reason) => tunnel.close(1001, reason instanceof TargetLeaving ? "target drained" : "going away");
        },
      },
      done: (outcome) => end(outcome, headers),
    };
  }

  const headers = withoutHopByHop(head.fields);
  let replyBody: BodySource | null = response.body ?? null;
  const eventStream = headers.get("content-type")?.startsWith("text/event-stream") ?? false;
  // Event streams are never buffered: they are meant to arrive as produced.
  if (f.buffering?.responses && response.body && !eventStream) {
    cancel = (reason) => response.body!.fail(reason);
    try {
      const whole = await bufferBody(response.body, f.buffering.memory, f.buffering.maxResponseBody);
      replyBody = whole.source;
      headers.set("Content-Length", String(whole.size));
      const sent = end;
      return { status: head.status, reason: head.reason, headers, body: replyBody, done: (o) => (whole.dispose(), sent(o, headers)) };
    } catch (error) {
      forgetClient();
      finish();
      if (error instanceof BodyTooLarge) return { failed: 502, reason: "response body too large" };
      return classify(error);
    }
  }
  // Cut by the drain deadline (or the client leaving): the client's connection ends short.
  cancel = (reason) => response.body?.fail(reason);
  return {
    status: head.status,
    reason: head.reason,
    headers,
    body: replyBody,
    chunked: response.body?.chunked,
    done: (outcome) => end(outcome, headers),
  };
}
