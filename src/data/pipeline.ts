// The one request pipeline. Every request, HTTP or WebSocket, from any
// listener, goes through these steps in this order; each step exists once:
//
//   refuse malformed → ACME challenge → route (and client IP header) →
//   HTTPS-only → redirects → basic auth → pause and stop → limits →
//   pick a target → upstream headers → forward
//
// A step either answers (an error page, a redirect) or lets the request go on.
import { parse as parseCookies } from "hono/utils/cookie";
import { errorPage, ERROR_PAGE_HEADERS, type CustomPages } from "../proxy/error-pages.ts";
import { clientIpFromHeader } from "../proxy/client-ip.ts";
import { upstreamHeaders } from "../proxy/headers.ts";
import { PUBLISHED_HEALTH_PREFIX, publishedHealth } from "../proxy/published-health.ts";
import { startRequestLog, type RequestLog } from "../proxy/request-log.ts";
import { prefixMatches, validHostHeader, type Route, type Router } from "../routing/router.ts";
import { KAMAL_ROLLOUT_COOKIE, ROLLOUT_COOKIE } from "../service/rollout.ts";
import type { Service } from "../service/service.ts";
import { log } from "../log.ts";
import { forward, type Buffering } from "./forwarder.ts";
import { noteActivity } from "./memory.ts";
import { Answer, type Reply, type Responder } from "./reply.ts";
import type { ProxyRequest } from "./request.ts";
import type { UpstreamPool } from "./upstream.ts";

/** After a write, this cookie sends the client's reads to the writers until the time it holds (unix ms). */
const WRITER_COOKIE = "parachute-writer";
const ACME_CHALLENGE = "/.well-known/acme-challenge/";
/** The published health check's answers: never cached by whatever sits between. */
const HEALTH_HEADERS = [["Content-Type", "text/plain"], ["Cache-Control", "no-store"]] as const;
/** How long an HTTP → HTTPS redirect waits for a certificate still being issued. */
const CERTIFICATE_WAIT_MS = 30_000;

/** The services requests are routed to: the registry itself, or a worker's copy of it. */
export interface Routes {
  readonly router: Router<Service>;
  all(): Iterable<Service>;
  service(name: string): Service | undefined;
  errorPages(service: Service): CustomPages | undefined;
}

/** The certificates and ACME challenges the data plane answers with. */
export interface CertificateView {
  has(host: string): boolean;
  /** Resolves true once `host` has a certificate, false when none is coming (or after `timeoutMs`). */
  waitFor(host: string, timeoutMs: number): Promise<boolean>;
  /**
   * A handshake for a host of on-demand service `service` that has no
   * certificate: true once its certificate is there or being ordered, false
   * when the host may not have one (see tls/on-demand.ts).
   */
  requestOnDemand(host: string, service: string): Promise<boolean>;
  /** The key authorization for an HTTP-01 challenge token, while its order runs. */
  challenge(token: string): string | undefined;
  /** The TLS-ALPN-01 challenge certificate for a host, while its order runs. */
  alpnChallenge(host: string): { cert: string; key: string } | undefined;
}

/** What the run options set for every service (README "Configuration"): the same in every worker. */
export interface ProxySettings {
  /** The request body limit of services that set none (bytes; 0: none). */
  maxRequestBody: number;
  /** Answer the published health check (src/proxy/published-health.ts). */
  publishHealthCheck: boolean;
}

export interface TlsContext {
  certificates: CertificateView;
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
  /** The client address the service's --client-ip-header gave, when it is a valid IP. */
  headerIp: string | undefined;
}

export class Pipeline {
  /** This data plane is going away (a graceful stop, an upgrade's old process): the published health check says so. */
  leaving = false;

  constructor(
    private readonly registry: Routes,
    private readonly tls: TlsContext,
    private readonly pool: UpstreamPool,
    private readonly settings: ProxySettings,
  ) {}

  /** The service's request body limit, else the server's (0: none). */
  private maxRequestBody(service: Service): number {
    return service.options.maxRequestBody || this.settings.maxRequestBody;
  }

  /** Runs the steps for `req` and calls `respond` once with the reply. */
  handle(req: ProxyRequest, responder: Responder): void {
    noteActivity();
    const entry = startRequestLog(req);
    const refused = this.refuse(req);
    if (refused) return responder.respond(this.reject(entry, refused.status, refused.error));
    const path = req.path!;
    if (this.settings.publishHealthCheck && path.startsWith(PUBLISHED_HEALTH_PREFIX)) {
      const health = publishedHealth(path, this.leaving, (name) => this.registry.service(name));
      if (health) return responder.respond(new Answer(health.status, HEALTH_HEADERS, health.body));
    }
    const challenge = this.acmeChallenge(req, path, entry);
    if (challenge) return responder.respond(challenge);

    const route = this.registry.router.match(entry.host, path);
    if (!route) return responder.respond(this.reject(entry, 404, "no service matches"));
    const service = route.service;
    const options = service.options;
    entry.service = service.name;
    entry.logRequestHeaders = options.logRequestHeaders;
    entry.logResponseHeaders = options.logResponseHeaders;
    const targetPath = options.stripPathPrefix ? stripPrefix(path, route.prefix) : path;
    // Below the path the client asked for, or the one the target sees (kamal-proxy's reading).
    if (options.excludeMetricsPaths.length) entry.uncounted = options.excludeMetricsPaths.some((prefix) => prefixMatches(prefix, path) || prefixMatches(prefix, targetPath));
    const headerIp = options.clientIpHeader ? clientIpFromHeader(req.headers, options.clientIpHeader) : undefined;
    if (headerIp) entry.clientAddr = headerIp;
    const passage: Passage = { req, entry, path, route, service, pages: this.registry.errorPages(service), targetPath, headerIp };

    if (req.scheme === "https" && !options.tls) {
      return responder.respond(this.reject(entry, 503, "service is not served over HTTPS", { pages: passage.pages, message: "This site is not served over HTTPS." }));
    }
    this.step(passage, responder, this.redirect(passage), () => this.afterRedirect(passage, responder));
  }

  private afterRedirect(passage: Passage, responder: Responder) {
    if (!passage.service.basicAuth) return this.afterAuthentication(passage, responder);
    this.step(passage, responder, this.authenticate(passage), () => this.afterAuthentication(passage, responder));
  }

  private afterAuthentication(passage: Passage, responder: Responder) {
    this.step(passage, responder, this.maintenance(passage), () => this.afterMaintenance(passage, responder));
  }

  /**
   * A step's outcome: an answer ends the request, nothing lets it go on.
   * Only a step that has to wait (a certificate being issued, a pause)
   * returns a promise; the others keep the request on the fast, synchronous path.
   */
  private step(passage: Passage, responder: Responder, outcome: Reply | undefined | Promise<Reply | undefined>, next: () => void) {
    if (outcome instanceof Promise) {
      outcome.then(
        (reply) => (reply ? responder.respond(reply) : next()),
        (error) => responder.respond(this.internalError(passage.entry, error)),
      );
      return;
    }
    if (outcome) return responder.respond(outcome);
    next();
  }

  private afterMaintenance(passage: Passage, responder: Responder) {
    const { req, entry, service } = passage;
    const limit = this.maxRequestBody(service);
    // A declared length over the limit is refused before anything is read.
    if (limit > 0 && Number(req.headers.get("content-length") ?? 0) > limit) {
      return responder.respond(this.reject(entry, 413, "request body too large", { pages: passage.pages }));
    }
    this.forward(passage, responder);
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
    const keyAuthorization = this.tls.certificates.challenge(path.slice(ACME_CHALLENGE.length));
    if (!keyAuthorization) return undefined;
    return new Answer(200, [["Content-Type", "text/plain"]], keyAuthorization, entry);
  }

  /** TLS redirects and canonical hosts, in one 301 that keeps the path and query. */
  private redirect({ req, entry, path, service }: Passage): Reply | undefined | Promise<Reply | undefined> {
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
    if (toScheme === "https" && req.scheme === "http") port = this.tls.httpsPort === 443 ? "" : `:${this.tls.httpsPort}`;
    else {
      const m = /:(\d+)$/.exec(req.hostHeader);
      port = m ? `:${m[1]}` : "";
    }
    const location = `${toScheme}://${toHost}${port}${path}${req.query}`;
    const reply = () => new Answer(301, [["Location", location]], "", entry);
    // A browser following a redirect to HTTPS should find a certificate:
    // it waits (bounded) for one still being issued.
    if (toScheme === "https" && req.scheme === "http" && !this.tls.certificates.has(toHost)) {
      return this.tls.certificates.waitFor(toHost, CERTIFICATE_WAIT_MS).then(reply);
    }
    return reply();
  }

  /**
   * Basic auth (--basic-auth-file), after the redirects so that credentials
   * are only asked for once the client is on HTTPS. Health checks (GET and
   * HEAD of the health-check path) pass without, as they do through a pause.
   * The ACME challenges parachute answers were answered before routing; any
   * other request under that path is the app's and needs credentials like
   * the rest, or it would be a way around them. A credential verified in the
   * last minute passes at once; others wait for the verify.
   */
  private authenticate({ req, entry, service, pages, path, targetPath }: Passage): Reply | undefined | Promise<Reply | undefined> {
    const auth = service.basicAuth;
    if (!auth) return undefined;
    if ((req.method === "GET" || req.method === "HEAD") && targetPath === service.options.healthCheckPath) return undefined;
    const allowed = auth.allows(req.headers.get("authorization"));
    if (allowed === true) return undefined;
    const refuse = () => this.reject(entry, 401, "unauthorized", { pages }, [["WWW-Authenticate", auth.challenge]]);
    if (allowed === false) return refuse();
    return allowed.then((ok) => (ok ? undefined : refuse()));
  }

  /**
   * Pause and stop. The health-check path keeps answering (GET and HEAD, as
   * the target would see the path) so that an orchestrator does not restart
   * a paused or stopped app.
   */
  private maintenance({ req, entry, service, pages, targetPath }: Passage): Reply | undefined | Promise<Reply | undefined> {
    const pause = service.pause;
    if (pause.mode === "running") return undefined;
    if ((req.method === "GET" || req.method === "HEAD") && targetPath === service.options.healthCheckPath) {
      return new Answer(200, [["Content-Type", "text/plain"]], "OK", entry);
    }
    return pause.wait().then((outcome) => {
      if (outcome === "stopped") return this.reject(entry, 503, "service stopped", { pages, message: pause.message });
      if (outcome === "timeout") return this.reject(entry, 504, "paused longer than max-pause", { pages });
      if (outcome === "shutdown") return this.reject(entry, 503, "parachute stopped while the service was paused", { pages });
      if (this.registry.service(service.name) !== service) return this.reject(entry, 404, "service removed");
      return undefined;
    });
  }

  /** Picks a target, builds the upstream headers and forwards. */
  private forward({ req, entry, service, pages, targetPath, route, headerIp }: Passage, responder: Responder) {
    const options = service.options;
    const isRead = req.method === "GET" || req.method === "HEAD";
    let rolloutValue: string | undefined;
    let pinnedToWriter = false;
    const cookieHeader = req.headers.get("cookie");
    if (cookieHeader && (service.rolloutTargets || service.readTargets.length)) {
      const cookies = parseCookies(cookieHeader);
      rolloutValue = cookies[ROLLOUT_COOKIE] ?? cookies[KAMAL_ROLLOUT_COOKIE];
      pinnedToWriter = Number(cookies[WRITER_COOKIE] ?? 0) > Date.now();
    }
    // A WebSocket is a long write-capable session: it goes to the writers,
    // unless the service lets read targets take them (--read-target-websockets).
    const { target, pinWriter } =
      req.websocket && !options.readTargetWebsockets ? service.pick(false, rolloutValue, true) : service.pick(isRead, rolloutValue, pinnedToWriter);
    if (!target) return responder.respond(this.reject(entry, 503, "no healthy target", { pages }));
    entry.target = target.address;

    const headers = upstreamHeaders(req.headers, { ip: req.remoteAddr, scheme: req.scheme, headerIp }, options.forwardHeaders, req.websocket, target.address);
    entry.requestId = headers.requestId;
    entry.clientAddr = headers.clientAddr;

    let setCookie: string | undefined;
    if (pinWriter && !req.websocket) {
      const until = Date.now() + options.writerAffinityTimeout;
      const cookiePath = options.scopeCookiePaths ? route.prefix : "/";
      setCookie = `${WRITER_COOKIE}=${until}; Max-Age=${Math.ceil(options.writerAffinityTimeout / 1000)}; Path=${cookiePath}; HttpOnly; SameSite=Lax`;
    }
    const maxRequestBody = this.maxRequestBody(service);
    forward(
      this.pool,
      {
        req,
        target,
        pathAndQuery: targetPath + req.query,
        headers,
        timeoutMs: options.targetTimeout,
        buffering: buffering(service, maxRequestBody),
        maxRequestBody,
        entry,
        setCookie,
        cookieScope: options.scopeCookiePaths && route.prefix !== "/" ? { prefix: route.prefix, host: entry.host } : undefined,
        pages,
      },
      responder,
    );
  }

  private internalError(entry: RequestLog, error: unknown): Reply {
    log.error("Unhandled error", { kind: "request", error: (error as Error)?.message ?? String(error) });
    return this.reject(entry, 500, "internal error");
  }

  /** Answers with a proxy error page, logged with the page's size. */
  reject(entry: RequestLog, status: number, error: string, options: Parameters<typeof errorPage>[1] = {}, headers: [string, string][] = []): Reply {
    return new Answer(status, headers.length ? [...ERROR_PAGE_HEADERS, ...headers] : ERROR_PAGE_HEADERS, errorPage(status, options), entry, error);
  }
}

function buffering(service: Service, maxRequestBody: number): Buffering | undefined {
  const o = service.options;
  if (!o.bufferRequests && !o.bufferResponses) return undefined;
  return { requests: o.bufferRequests, responses: o.bufferResponses, memory: o.bufferMemory, maxRequestBody, maxResponseBody: o.maxResponseBody };
}

