// The one request pipeline. Every request, HTTP or WebSocket, from any
// listener, goes through these steps in this order; each step exists once:
//
//   refuse malformed → ACME challenge → route → HTTPS-only → redirects →
//   pause and stop → limits → pick a target → upstream headers → forward
//
// A step either answers (an error page, a redirect) or lets the request go on.
import { parse as parseCookies } from "hono/utils/cookie";
import { errorPage, ERROR_PAGE_HEADERS, type CustomPages } from "../proxy/error-pages.ts";
import { upstreamFields } from "../proxy/headers.ts";
import { logRequest, startRequestLog, type Outcome, type RequestLog } from "../proxy/request-log.ts";
import { validHostHeader, type Route } from "../routing/router.ts";
import type { Registry } from "../service/registry.ts";
import { ROLLOUT_COOKIE } from "../service/rollout.ts";
import type { Service } from "../service/service.ts";
import type { CertificateManager } from "../tls/manager.ts";
import { forward, type Buffering } from "./forwarder.ts";
import { answer, type Reply } from "./reply.ts";
import type { ProxyRequest } from "./request.ts";
import type { UpstreamPool } from "./upstream.ts";

/** After a write, this cookie sends the client's reads to the writers until the time it holds (unix ms). */
const WRITER_COOKIE = "parachute-writer";
const ACME_CHALLENGE = "/.well-known/acme-challenge/";
/** How long an HTTP → HTTPS redirect waits for a certificate still being issued. */
const CERTIFICATE_WAIT_MS = 30_000;

export interface TlsContext {
  certificates: CertificateManager;
  /** The HTTPS port redirects point to; 0 when HTTPS is off (no redirects then). */
  httpsPort: number;
}

export function stripPrefix(path: string, prefix: string): string {
  if (prefix === "/") return path;
  const rest = path.slice(prefix.length);
  return rest === "" ? "/" : rest;
}

/** A request on its way through the steps: what has been decided so far. */
interface Passage {
  req: ProxyRequest;
  entry: RequestLog;
  path: string;
  route: Route<Service>;
  service: Service;
  pages: CustomPages | undefined;
  /** The path the target sees (after prefix stripping). */
  targetPath: string;
}

export class Pipeline {
  constructor(
    private readonly registry: Registry,
    private readonly tls: TlsContext,
    private readonly pool: UpstreamPool,
  ) {}

  async handle(req: ProxyRequest): Promise<Reply> {
    const entry = startRequestLog(req);
    const refused = this.refuse(req);
    if (refused) return this.reject(entry, refused.status, refused.error);
    const path = req.path!;
    const challenge = this.acmeChallenge(req, path, entry);
    if (challenge) return challenge;

    const route = this.registry.router.match(entry.host, path);
    if (!route) return this.reject(entry, 404, "no service matches");
    const service = route.service;
    const options = service.options;
    entry.service = service.name;
    entry.logRequestHeaders = options.logRequestHeaders;
    entry.logResponseHeaders = options.logResponseHeaders;
    const passage: Passage = {
      req,
      entry,
      path,
      route,
      service,
      pages: this.registry.errorPages(service),
      targetPath: options.stripPathPrefix ? stripPrefix(path, route.prefix) : path,
    };

    if (req.scheme === "https" && !options.tls) {
      return this.reject(entry, 503, "service is not served over HTTPS", { pages: passage.pages, message: "This site is not served over HTTPS." });
    }
    const redirect = await this.redirect(passage);
    if (redirect) return redirect;
    const held = await this.maintenance(passage);
    if (held) return held;
    // A declared length over the limit is refused before anything is read.
    if (options.maxRequestBody > 0 && Number(req.headers.get("content-length") ?? 0) > options.maxRequestBody) {
      return this.reject(entry, 413, "request body too large", { pages: passage.pages });
    }
    return this.forward(passage);
  }

  /** Requests no service should see: a malformed Host (400, as nginx does), a target that is not a path, CONNECT (405). */
  private refuse(req: ProxyRequest): { status: number; error: string } | undefined {
    if (req.hostHeader !== "" && !validHostHeader(req.hostHeader)) return { status: 400, error: "invalid Host header" };
    if (req.method === "CONNECT") return { status: 405, error: "CONNECT is not supported" };
    if (req.path === undefined) return { status: 400, error: "invalid request target" };
    return undefined;
  }

  /**
   * ACME HTTP-01 challenges are answered for every host, before routing and
   * redirects; unknown tokens go to the app (which may run its own ACME
   * client) and are never redirected.
   */
  private acmeChallenge(req: ProxyRequest, path: string, entry: RequestLog): Reply | undefined {
    if (req.scheme !== "http" || !path.startsWith(ACME_CHALLENGE)) return undefined;
    const keyAuthorization = this.tls.certificates.issuer.challenges.get(path.slice(ACME_CHALLENGE.length));
    if (!keyAuthorization) return undefined;
    return answer(200, [["Content-Type", "text/plain"]], keyAuthorization, (o) => logRequest(entry, { status: 200, bytes: o.bytes }));
  }

  /** TLS redirects and canonical hosts, in one 301 that keeps the path and query. */
  private async redirect({ req, entry, path, service }: Passage): Promise<Reply | undefined> {
    const options = service.options;
    if (path.startsWith(ACME_CHALLENGE) && req.scheme === "http") return undefined;
    if (!options.tls && options.canonicalHost === undefined) return undefined;
    const host = entry.host;
    let toHost = host;
    let toScheme = req.scheme;
    if (options.canonicalHost && host !== options.canonicalHost) toHost = options.canonicalHost;
    if (options.tls && options.tlsRedirect && req.scheme === "http" && this.tls.httpsPort > 0) toScheme = "https";
    if (toHost === host && toScheme === req.scheme) return undefined;
    let port = "";
    if (toScheme === "https" && req.scheme === "http") {
      port = this.tls.httpsPort === 443 ? "" : `:${this.tls.httpsPort}`;
      // A browser following this redirect should find a certificate: wait
      // (bounded) for one still being issued.
      await this.tls.certificates.waitFor(toHost, CERTIFICATE_WAIT_MS);
    } else {
      const m = /:(\d+)$/.exec(req.hostHeader);
      port = m ? `:${m[1]}` : "";
    }
    const location = `${toScheme}://${toHost}${port}${path}${req.query}`;
    return answer(301, [["Location", location]], "", () => logRequest(entry, { status: 301, bytes: 0 }));
  }

  /**
   * Pause and stop. The health-check path keeps answering (GET and HEAD, as
   * the target would see the path) so that an orchestrator does not restart
   * a paused or stopped app.
   */
  private async maintenance({ req, entry, service, pages, targetPath }: Passage): Promise<Reply | undefined> {
    const pause = service.pause;
    if (pause.mode === "running") return undefined;
    if ((req.method === "GET" || req.method === "HEAD") && targetPath === service.options.healthCheck.path) {
      return answer(200, [["Content-Type", "text/plain"]], "OK", (o) => logRequest(entry, { status: 200, bytes: o.bytes }));
    }
    const outcome = await pause.wait();
    if (outcome === "stopped") return this.reject(entry, 503, "service stopped", { pages, message: pause.message });
    if (outcome === "timeout") return this.reject(entry, 504, "paused longer than max-pause", { pages });
    if (this.registry.service(service.name) !== service) return this.reject(entry, 404, "service removed");
    return undefined;
  }

  /** Picks a target, builds the upstream headers and forwards. */
  private async forward({ req, entry, service, pages, targetPath }: Passage): Promise<Reply> {
    const options = service.options;
    const isRead = req.method === "GET" || req.method === "HEAD";
    let rolloutValue: string | undefined;
    let pinnedToWriter = false;
    const cookieHeader = req.headers.get("cookie");
    if (cookieHeader && (service.rolloutTargets || service.readTargets.length)) {
      const cookies = parseCookies(cookieHeader);
      rolloutValue = cookies[ROLLOUT_COOKIE];
      pinnedToWriter = Number(cookies[WRITER_COOKIE] ?? 0) > Date.now();
    }
    // A WebSocket is a long write-capable session: it goes to the writers.
    const { target, pinWriter } = req.websocket ? service.pick(false, rolloutValue, true) : service.pick(isRead, rolloutValue, pinnedToWriter);
    if (!target) return this.reject(entry, 503, "no healthy target", { pages });
    entry.target = target.address;

    const fields = upstreamFields(req.headers, { ip: req.remoteAddr, scheme: req.scheme }, options.forwardHeaders, req.websocket, target.address);
    entry.requestId = fields.get("x-request-id")!;
    entry.clientAddr = fields.get("x-forwarded-for")!.split(",")[0]!.trim();

    const result = await forward(this.pool, {
      req,
      target,
      pathAndQuery: targetPath + req.query,
      fields,
      timeoutMs: options.targetTimeoutMs,
      buffering: buffering(service),
      done: (outcome) => logRequest(entry, outcome),
    });
    if ("failed" in result) {
      // The client is gone: nothing will be written, but the request is logged.
      if (result.failed === 499) {
        logRequest(entry, { status: 499, bytes: 0, error: result.reason });
        return answer(499, [], "", () => {});
      }
      return this.reject(entry, result.failed, result.reason, { pages });
    }
    if (pinWriter && !req.websocket) {
      const until = Date.now() + options.writerAffinityTimeoutMs;
      const maxAge = Math.ceil(options.writerAffinityTimeoutMs / 1000);
      result.headers.append("Set-Cookie", `${WRITER_COOKIE}=${until}; Max-Age=${maxAge}; Path=/; HttpOnly; SameSite=Lax`);
    }
    return result;
  }

  /** Answers with a proxy error page, logged with the page's size. */
  reject(entry: RequestLog, status: number, error: string, options: Parameters<typeof errorPage>[1] = {}): Reply {
    return answer(status, ERROR_PAGE_HEADERS, errorPage(status, options), (o) => logRequest(entry, { status, bytes: o.bytes, error }));
  }
}

function buffering(service: Service): Buffering | undefined {
  const o = service.options;
  if (!o.bufferRequests && !o.bufferResponses) return undefined;
  return { requests: o.bufferRequests, responses: o.bufferResponses, memory: o.bufferMemory, maxRequestBody: o.maxRequestBody, maxResponseBody: o.maxResponseBody };
}

export type { Outcome };
