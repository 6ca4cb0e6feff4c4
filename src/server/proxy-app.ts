// The proxied-traffic side: a Hono app whose catch-all route routes, picks a
// target and forwards. Shared by the HTTP and HTTPS listeners.
import { Hono } from "hono";
import { errorPage } from "../proxy/error-pages.ts";
import { forward } from "../proxy/forward.ts";
import { refuseRequest, upstreamRequestHeaders } from "../proxy/headers.ts";
import { logRequest, startRequestLog, stripPrefix, type PeerAddress, type Scheme } from "../proxy/request-log.ts";
import type { Registry } from "../service/registry.ts";
import { ROLLOUT_COOKIE } from "../service/rollout.ts";
import type { Service } from "../service/service.ts";
import type { CertificateManager } from "../tls/manager.ts";
import type { RequestContext } from "./node-listener.ts";
import { parse as parseCookies } from "hono/utils/cookie";

/** After a write, this cookie sends the client's reads to the writers until the time it holds (unix ms). */
const WRITER_COOKIE = "parachute-writer";

export interface TlsContext {
  certificates: CertificateManager;
  /** The HTTPS port redirects point to; 0 when HTTPS is off (no redirects then). */
  httpsPort: number;
}

const ACME_CHALLENGE = "/.well-known/acme-challenge/";
/** How long an HTTP → HTTPS redirect waits for a certificate still being issued. */
const CERTIFICATE_WAIT_MS = 30_000;

/** The 301 target for TLS redirects and canonical hosts (both in one hop), or undefined. */
async function redirectTarget(service: Service, host: string, hostHeader: string, scheme: Scheme, path: string, query: string, tls?: TlsContext) {
  const options = service.options;
  let toHost = host;
  let toScheme = scheme;
  if (options.canonicalHost && host !== options.canonicalHost) toHost = options.canonicalHost;
  if (options.tls && options.tlsRedirect && scheme === "http" && tls && tls.httpsPort > 0) toScheme = "https";
  if (toHost === host && toScheme === scheme) return undefined;
  let port = "";
  if (toScheme === "https" && scheme === "http") {
    port = tls!.httpsPort === 443 ? "" : `:${tls!.httpsPort}`;
    // A browser following this redirect should find a certificate: wait
    // (bounded) for one still being issued.
    await tls!.certificates.waitFor(toHost, CERTIFICATE_WAIT_MS);
  } else {
    const m = /:(\d+)$/.exec(hostHeader);
    port = m ? `:${m[1]}` : "";
  }
  return `${toScheme}://${toHost}${port}${path}${query}`;
}

export function createProxyApp(registry: Registry, scheme: Scheme, tls?: TlsContext, peerAddress?: PeerAddress) {
  const app = new Hono<{ Bindings: RequestContext }>();

  app.all("*", async (c) => {
    const req = c.req.raw;
    const server = c.env;
    const entry = startRequestLog(req, server, scheme, peerAddress);
    const { host, path, query, remoteAddr } = entry;
    /** Answers with a proxy error page and logs it with the page's size. */
    const reject = (status: number, error: string, options: Parameters<typeof errorPage>[1] = {}) => {
      const page = errorPage(status, options);
      logRequest(entry, { status, bytes: page.bytes, error });
      return page.response;
    };

    const refused = refuseRequest(req);
    if (refused) return reject(refused.status, refused.error);

    // ACME HTTP-01 challenges are answered for every host, before routing
    // and redirects; unknown tokens go to the app (which may run its own
    // ACME client) and are never redirected.
    const isChallenge = scheme === "http" && path.startsWith(ACME_CHALLENGE);
    if (tls && isChallenge) {
      const keyAuthorization = tls.certificates.issuer.challenges.get(path.slice(ACME_CHALLENGE.length));
      if (keyAuthorization) return new Response(keyAuthorization, { headers: { "content-type": "text/plain" } });
    }

    const route = registry.router.match(host, path);
    if (!route) {
      return reject(404, "no service matches");
    }
    const service: Service = route.service;
    const options = service.options;
    entry.service = service.name;
    entry.logRequestHeaders = options.logRequestHeaders;
    const pages = registry.errorPages(service);

    if (scheme === "https" && !options.tls) {
      return reject(503, "service is not served over HTTPS", { pages, message: "This site is not served over HTTPS." });
    }
    // Only services with TLS or a canonical host can redirect; the rest skip the (async) check.
    const mayRedirect = !isChallenge && (options.tls || options.canonicalHost !== undefined);
    const location = mayRedirect ? await redirectTarget(service, host, req.headers.get("host") ?? "", scheme, path, query, tls) : undefined;
    if (location) {
      logRequest(entry, { status: 301, bytes: 0 });
      return new Response(null, { status: 301, headers: { location } });
    }

    // Maintenance: the health-check path keeps answering so that an
    // orchestrator does not restart a paused or stopped app.
    if (service.pause.mode !== "running") {
      if (path === options.healthCheck.path) return new Response("OK", { status: 200 });
      const outcome = await service.pause.wait();
      if (outcome === "stopped") {
        return reject(503, "service stopped", { pages, message: service.pause.message });
      }
      if (outcome === "timeout") {
        return reject(504, "paused longer than max-pause", { pages });
      }
      if (registry.service(service.name) !== service) {
        return reject(404, "service removed");
      }
    }

    // A declared length over the limit is refused before anything is read.
    if (options.maxRequestBody > 0 && Number(req.headers.get("content-length") ?? 0) > options.maxRequestBody) {
      return reject(413, "request body too large", { pages });
    }

    const isRead = req.method === "GET" || req.method === "HEAD";
    let rolloutValue: string | undefined;
    let pinnedToWriter = false;
    const cookieHeader = req.headers.get("cookie");
    if (cookieHeader && (service.rolloutTargets || service.readTargets.length)) {
      const cookies = parseCookies(cookieHeader);
      rolloutValue = cookies[ROLLOUT_COOKIE];
      pinnedToWriter = Number(cookies[WRITER_COOKIE] ?? 0) > Date.now();
    }
    const { target, pinWriter } = service.pick(isRead, rolloutValue, pinnedToWriter);
    if (!target) {
      return reject(503, "no healthy target", { pages });
    }
    entry.target = target.address;

    const headers = upstreamRequestHeaders(req.headers, { ip: remoteAddr, scheme }, options.forwardHeaders);
    entry.requestId = headers.get("x-request-id")!;
    entry.clientAddr = headers.get("x-forwarded-for")!.split(",")[0]!.trim();

    // The wait for a slow target (up to --target-timeout) and long streams must
    // not be cut by the listener's idle timer (BUN-NOTES §1.8).
    server.timeout(req, 0);

    const result = await forward({
      req,
      target,
      pathAndQuery: (options.stripPathPrefix ? stripPrefix(path, route.prefix) : path) + query,
      headers,
      timeoutMs: options.targetTimeoutMs,
      buffering:
        options.bufferRequests || options.bufferResponses
          ? {
              requests: options.bufferRequests,
              responses: options.bufferResponses,
              memory: options.bufferMemory,
              maxRequestBody: options.maxRequestBody,
              maxResponseBody: options.maxResponseBody,
            }
          : undefined,
      done: (outcome) => logRequest(entry, outcome, options.logResponseHeaders),
    });
    if ("response" in result) {
      if (pinWriter) {
        const until = Date.now() + options.writerAffinityTimeoutMs;
        const maxAge = Math.ceil(options.writerAffinityTimeoutMs / 1000);
        result.response.headers.append("set-cookie", `${WRITER_COOKIE}=${until}; Max-Age=${maxAge}; Path=/; HttpOnly; SameSite=Lax`);
      }
      return result.response;
    }
    return reject(result.error, result.reason, { pages });
  });

  return app;
}
