// Forwards one request to one target with fetch and streams the answer back
// (SPEC §7). The pitfalls this avoids are in shared/BUN-NOTES.md §1:
// decompress:false keeps gzip bytes intact, redirect:"manual" never follows,
// only the wait for response *headers* is timed (a long body is fine), and the
// target's in-flight count ends only when the body has been fully relayed, so
// draining waits for downloads too.
import { DrainCancelled, type Target } from "../service/target.ts";
import { BodyTooLarge, bufferBody, type BufferedBody } from "./buffer.ts";
import { stripHopByHop } from "./headers.ts";
import { needsVerbatimFetch, verbatimFetch } from "./verbatim-fetch.ts";

/** Small bodies whose length is known are read whole: cheaper than a relayed stream, and the length is kept exactly. */
const SMALL_BODY = 64 * 1024;

export class TargetTimeout extends Error {
  override name = "TargetTimeout";
}
class ClientGone extends Error {
  override name = "ClientGone";
}

export interface Outcome {
  /** Status sent to the client (for proxy errors, the error status; 499 when the client went away first). */
  status: number;
  /** Bytes of response body relayed. */
  bytes: number;
  /** Set when the proxy produced the status itself. */
  error?: string;
  /** The response headers sent to the client, when the target answered. */
  headers?: Headers;
}

export interface ForwardRequest {
  req: Request;
  target: Target;
  /** Path and raw query to request from the target (after prefix stripping). */
  pathAndQuery: string;
  headers: Headers;
  timeoutMs: number;
  buffering?: Buffering;
  /**
   * Called exactly once when a relayed exchange is over (body relayed, failed
   * or cancelled). Not called when forward() returns an error: the caller
   * renders the error page and reports it.
   */
  done: (outcome: Outcome) => void;
}

export interface Buffering {
  requests: boolean;
  responses: boolean;
  memory: number;
  maxRequestBody: number;
  maxResponseBody: number;
}

export type ForwardResult = { response: Response } | { error: number; reason: string };

function hasNoBody(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
}

export async function forward(f: ForwardRequest): Promise<ForwardResult> {
  const { req, target } = f;
  const controller = new AbortController();
  const finish = target.begin(controller);
  let finished = false;
  let headers: Headers | undefined;
  const end = (outcome: Outcome | undefined) => {
    if (finished) return;
    finished = true;
    finish();
    if (outcome) f.done(headers ? { ...outcome, headers } : outcome);
  };

  const clientSignal = req.signal;
  const onClientGone = () => controller.abort(new ClientGone("client disconnected"));
  clientSignal.addEventListener("abort", onClientGone, { once: true });

  const buffering = f.buffering;
  let requestBody: RequestInit["body"] = req.body;
  let bufferedRequest: BufferedBody | undefined;
  if (buffering?.requests && req.body) {
    try {
      bufferedRequest = await bufferBody(req.body, buffering.memory, buffering.maxRequestBody);
      requestBody = bufferedRequest.body;
      f.headers.set("content-length", String(bufferedRequest.size));
    } catch (error) {
      clientSignal.removeEventListener("abort", onClientGone);
      const failure = error instanceof BodyTooLarge ? { error: 413, reason: "request body too large" } : { error: 499, reason: "client disconnected" };
      end(undefined);
      return failure;
    }
  }

  // The target timeout counts from when the target is asked: a buffered
  // upload that the client sends slowly is not the target's fault.
  const timer = setTimeout(() => controller.abort(new TargetTimeout("target timeout")), f.timeoutMs);
  let upstream: Response;
  try {
    upstream = needsVerbatimFetch(f.pathAndQuery)
      ? await verbatimFetch(target.origin, f.pathAndQuery, {
          method: req.method,
          headers: f.headers,
          body: (requestBody ?? null) as Blob | ReadableStream<Uint8Array> | null,
          signal: controller.signal,
        })
      : await fetch(target.origin + f.pathAndQuery, {
          method: req.method,
          headers: f.headers,
          body: requestBody,
          redirect: "manual",
          decompress: false,
          signal: controller.signal,
          // Long responses (SSE, downloads) must not be cut by fetch's idle timer.
          timeout: false,
        });
  } catch (error) {
    clearTimeout(timer);
    bufferedRequest?.dispose();
    clientSignal.removeEventListener("abort", onClientGone);
    const failure = classify(controller.signal.reason, error);
    end(undefined);
    return failure;
  }
  clearTimeout(timer);
  bufferedRequest?.dispose();

  headers = new Headers(upstream.headers);
  stripHopByHop(headers);
  const init = { status: upstream.status, statusText: upstream.statusText, headers };

  const body = upstream.body;
  if (!body || hasNoBody(req.method, upstream.status)) {
    // A body-less response may be announced as `content-length: 0` (Bun.serve
    // does so, for tunnelled requests); for HEAD that would misstate the GET
    // body, so say what the app said.
    if (req.method === "HEAD" && !headers.has("content-length") && upstream.headers.get("transfer-encoding")) {
      headers.set("transfer-encoding", "chunked");
    }
    clientSignal.removeEventListener("abort", onClientGone);
    if (body) void body.cancel().catch(() => {});
    end({ status: upstream.status, bytes: 0 });
    return { response: new Response(null, init) };
  }

  // Event streams are never buffered: they are meant to arrive as produced.
  if (buffering?.responses && !headers.get("content-type")?.startsWith("text/event-stream")) {
    try {
      const buffered = await bufferBody(body, buffering.memory, buffering.maxResponseBody);
      clientSignal.removeEventListener("abort", onClientGone);
      headers.delete("content-length");
      if (buffered.body instanceof Blob) {
        end({ status: upstream.status, bytes: buffered.size });
        return { response: new Response(buffered.body, init) };
      }
      return { response: new Response(relay(buffered.body, upstream.status, () => buffered.dispose()), init) };
    } catch (error) {
      clientSignal.removeEventListener("abort", onClientGone);
      const failure = error instanceof BodyTooLarge ? { error: 502, reason: "response body too large" } : classify(controller.signal.reason, error);
      end(undefined);
      return failure;
    }
  }

  const length = Number(upstream.headers.get("content-length") ?? NaN);
  if (length <= SMALL_BODY) {
    try {
      const bytes = await upstream.arrayBuffer();
      clientSignal.removeEventListener("abort", onClientGone);
      end({ status: upstream.status, bytes: bytes.byteLength });
      return { response: new Response(bytes, init) };
    } catch (error) {
      clientSignal.removeEventListener("abort", onClientGone);
      const failure = classify(controller.signal.reason, error);
      end(undefined);
      return failure;
    }
  }

  return { response: new Response(relay(body, upstream.status), init) };

  // Relays a body chunk by chunk: pull-based with no queue of our own, so a
  // slow client slows the upstream read (backpressure) and memory stays flat.
  // The exchange ends (in-flight count, log line) when the last byte is out.
  function relay(source: ReadableStream<Uint8Array>, status: number, cleanup?: () => void): ReadableStream<Uint8Array> {
    const reader = source.getReader();
    let bytes = 0;
    const close = (outcome: Outcome) => {
      clientSignal.removeEventListener("abort", onClientGone);
      cleanup?.();
      end(outcome);
    };
    return new ReadableStream<Uint8Array>(
      {
        async pull(out) {
          try {
            const { value, done } = await reader.read();
            if (done) {
              out.close();
              close({ status, bytes });
              return;
            }
            bytes += value.byteLength;
            out.enqueue(value);
          } catch (error) {
            close({ status, bytes, error: describe(controller.signal.reason ?? error) });
            out.error(error);
          }
        },
        cancel(reason) {
          close({ status, bytes, error: "client disconnected" });
          return reader.cancel(reason).catch(() => {});
        },
      },
      { highWaterMark: 0 },
    );
  }
}

function describe(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return String(reason);
}

/** Maps why fetch failed to the status the client gets (SPEC §7). */
function classify(abortReason: unknown, error: unknown): { error: number; reason: string } {
  if (abortReason instanceof TargetTimeout) return { error: 504, reason: "target timeout" };
  if (abortReason instanceof DrainCancelled) return { error: 504, reason: "cancelled by drain timeout" };
  if (abortReason instanceof ClientGone) return { error: 499, reason: "client disconnected" };
  const e = error as { code?: string; message?: string };
  return { error: 502, reason: `target failed: ${e?.code ?? e?.message ?? "unknown error"}` };
}
