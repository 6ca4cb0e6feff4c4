// HTTP/2 clients, behind the TLS front: a loopback Bun.serve with every
// certificate by SNI. Its web Requests go through the same pipeline as
// HTTP/1 ones, and Replies become web Responses. Over HTTP/2 a streamed body
// reaches the client without Content-Length (Bun.serve drops it,
// oven-sh/bun#10507), so bodies up to 64 KiB of known length are sent whole.
import type { Server } from "bun";
import { Fields } from "../http/fields.ts";
import { removeDotSegments } from "../http/request-target.ts";
import { log } from "../log.ts";
import { normalizeClientIp } from "../proxy/headers.ts";
import { readAll, toReadableStream, WebStreamSource } from "./body.ts";
import { UpstreamBody } from "./upstream.ts";
import type { Pipeline } from "./pipeline.ts";
import type { Reply } from "./reply.ts";
import { Cancel, ClientGone, type ProxyRequest } from "./request.ts";

/** Bodies of known length up to this size are read whole, so their Content-Length survives. */
const WHOLE_BODY = 64 * 1024;

export interface H2Certificate {
  host: string;
  cert: string;
  key: string;
}

/** Splits `https://host/p/a?q` into the raw path and query. */
function pathAndQuery(url: string): { path: string; query: string } {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return { path: "/", query: "" };
  const q = url.indexOf("?", start);
  return q === -1 ? { path: url.slice(start), query: "" } : { path: url.slice(start, q), query: url.slice(q) };
}

function proxyRequest(req: Request, remoteAddr: string): ProxyRequest {
  const { path, query } = pathAndQuery(req.url);
  const headers = Fields.from(req.headers);
  const length = headers.get("content-length");
  const gone = new Cancel();
  req.signal.addEventListener("abort", () => gone.fire(new ClientGone()), { once: true });
  return {
    method: req.method,
    path: removeDotSegments(path),
    query,
    hostHeader: headers.get("host") ?? "",
    headers,
    proto: "HTTP/2.0",
    scheme: "https",
    remoteAddr,
    body: req.body ? new WebStreamSource(req.body, length === undefined ? undefined : Number(length)) : null,
    websocket: false,
    started: performance.now(),
    gone,
  };
}

/** A Reply as a web Response; `done` is reported when the body has been sent. */
async function toResponse(reply: Reply): Promise<Response> {
  if (reply.upgrade) {
    // No WebSocket over HTTP/2 here: Bun.serve does not offer extended CONNECT (RFC 8441).
    reply.upgrade.transport.destroy();
    reply.done({ bytes: 0, error: "upgrade over HTTP/2" });
    return new Response(null, { status: 502 });
  }
  const headers = reply.headers.toHeaders();
  const init = { status: reply.status, statusText: reply.reason ?? "", headers };
  const body = reply.body;
  if (body === null || body instanceof Uint8Array) {
    reply.done({ bytes: body?.byteLength ?? 0 });
    return new Response(body, init);
  }
  // A body that has all arrived already (a small answer) is sent as it is, at once.
  const arrived = body instanceof UpstreamBody ? body.takeWhole() : undefined;
  if (arrived) {
    reply.done({ bytes: arrived.byteLength });
    return new Response(arrived, init);
  }
  if (body.length !== undefined && body.length <= WHOLE_BODY) {
    try {
      const whole = await readAll(body);
      reply.done({ bytes: whole.byteLength });
      return new Response(whole, init);
    } catch (error) {
      reply.done({ bytes: 0, error: (error as Error).message });
      throw error;
    }
  }
  headers.delete("content-length");
  return new Response(toReadableStream(body, (outcome) => reply.done(outcome)), init);
}

export class H2Server {
  private server: Server<undefined>;

  constructor(
    certificates: H2Certificate[],
    fallback: { cert: string; key: string },
    pipeline: Pipeline,
    /** The client behind a connection relayed by the TLS front, by its loopback port. */
    clientAddress: (port: number) => string | undefined,
  ) {
    this.server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      reusePort: false,
      development: false,
      idleTimeout: 60,
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      // Bun registers SNI names one entry per name (SANs are not read), and
      // the first entry answers unknown names: the fallback goes first.
      tls: [{ cert: fallback.cert, key: fallback.key }, ...certificates.map((c) => ({ cert: c.cert, key: c.key, serverName: c.host }))],
      http2: true,
      fetch: async (req: Request, server: Server<undefined>) => {
        const peer = server.requestIP(req);
        const remoteAddr = (peer && clientAddress(peer.port)) ?? normalizeClientIp(peer?.address);
        // Long streams and slow targets are timed by the proxy (--target-timeout), not by Bun's idle timer.
        server.timeout(req, 0);
        const reply = await new Promise<Reply>((resolve) => pipeline.handle(proxyRequest(req, remoteAddr), { respond: resolve }));
        return toResponse(reply);
      },
      error: (error: Error) => {
        log.error("Unhandled error", { kind: "http2", error: error.message });
        return new Response("Internal Server Error", { status: 500 });
      },
    } as never) as Server<undefined>;
  }

  get port(): number {
    return this.server.port!;
  }

  stop(force: boolean): Promise<void> {
    return this.server.stop(force);
  }
}
