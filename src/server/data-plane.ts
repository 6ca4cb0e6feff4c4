// The listeners that carry proxied traffic, and the pipeline behind them: one
// HTTP/1 server for plain HTTP and for HTTPS terminated by the TLS front, and
// the HTTP/2 server behind that front. A single-process parachute runs one;
// with workers, each worker runs one on the sockets the control plane holds.
import { isIP } from "node:net";
import type { TCPSocketListener } from "bun";
import { Http1Server, listenerFd, listenHttp } from "../data/http1-server.ts";
import { HttpsListener } from "../data/https.ts";
import { Pipeline, type CertificateView, type ProxySettings, type Routes, type TlsContext } from "../data/pipeline.ts";
import { ProxyProtocolGate, type ProxyProtocolPolicy } from "../data/proxy-protocol-gate.ts";
import type { SocketTransport } from "../data/transport.ts";
import { UpstreamPool } from "../data/upstream.ts";
import { fallbackCertificate } from "../tls/certificates.ts";
import { onDemandServiceFor } from "../tls/on-demand.ts";

/** How long a TLS handshake waits for a certificate still being issued. */
const CERTIFICATE_WAIT_MS = 30_000;
/** At a drain's deadline, how long the answers to requests a pause held still get before the rest is cut. */
const PAUSED_ANSWER_MS = 1_000;

export class StartupError extends Error {}

function listenError(what: string, port: number, error: unknown): StartupError {
  const code = (error as { code?: string }).code;
  if (code === "EADDRINUSE") return new StartupError(`${what} port ${port} is already in use`);
  if (code === "EACCES") return new StartupError(`no permission to listen on ${what} port ${port}`);
  return new StartupError(`cannot listen on ${what} port ${port}: ${(error as Error).message}`);
}

/** Runs `start`, turning a bind error into a StartupError naming the port. */
export function listen<T>(what: string, port: number, start: () => T): T {
  try {
    return start();
  } catch (error) {
    throw listenError(what, port, error);
  }
}

export interface DataPlaneOptions {
  routes: Routes;
  certificates: CertificateView;
  hostname: string | undefined;
  httpPort: number;
  /** 0: no HTTPS. */
  httpsPort: number;
  /** Listening sockets to adopt instead of binding (inherited from a predecessor or the control plane). */
  httpFd?: number;
  httpsFd?: number;
  /** The HTTPS port redirects name, when it differs from the one bound here (0 = the bound one). */
  redirectHttpsPort?: number;
  settings: ProxySettings;
  /** Both ports expect a PROXY protocol header from these senders (README "PROXY protocol"); undefined: off. */
  proxyProtocol?: ProxyProtocolPolicy;
}

export class DataPlaneListeners {
  readonly http1: Http1Server;
  readonly https: HttpsListener | undefined;
  readonly http: TCPSocketListener<SocketTransport>;
  private readonly pool = new UpstreamPool();
  private readonly pipeline: Pipeline;

  /** Binds (or adopts) the ports; throws a StartupError naming the port that failed. */
  constructor(private readonly options: DataPlaneOptions) {
    const { routes, certificates } = options;
    const tlsContext: TlsContext = { certificates, httpsPort: 0 };
    const pipeline = new Pipeline(routes, tlsContext, this.pool, options.settings);
    this.pipeline = pipeline;
    const proxyProtocol = options.proxyProtocol && new ProxyProtocolGate(options.proxyProtocol);
    this.http1 = new Http1Server(pipeline);
    // HTTPS first: its port must be known for redirects before traffic flows.
    // Adopted sockets come as a set: HTTPS is on when its socket came with it.
    const adopting = options.httpFd !== undefined;
    if (adopting ? options.httpsFd !== undefined : options.httpsPort > 0) {
      const https = new HttpsListener({
        port: options.httpsPort,
        hostname: options.hostname,
        fd: options.httpsFd,
        proxyProtocol,
        pipeline,
        http1: this.http1,
        fallback: fallbackCertificate(),
        admit: (serverName) => admit(routes, certificates, serverName),
        alpnChallenge: (serverName) => certificates.alpnChallenge(serverName),
      });
      listen("HTTPS", options.httpsPort, () => https.start());
      tlsContext.httpsPort = options.redirectHttpsPort || https.boundPort;
      this.https = https;
    }
    try {
      this.http = listen("HTTP", options.httpPort, () =>
        listenHttp({ port: options.httpPort, hostname: options.hostname, fd: options.httpFd, proxyProtocol }, this.http1),
      );
    } catch (error) {
      void this.https?.stop(true);
      throw error;
    }
  }

  /** The bound port; an adopted socket's listener does not know it, so it is the one handed over. */
  get httpPort(): number {
    return this.http.port || this.options.httpPort;
  }

  get httpsPort(): number {
    return this.https?.boundPort ?? 0;
  }

  /** The listening sockets, to hand to a successor. */
  get fds(): { httpFd: number | undefined; httpsFd: number | undefined } {
    return { httpFd: listenerFd(this.http), httpsFd: this.https?.fd };
  }

  /** From now on the published health check answers 503: load balancers move away while this still serves. */
  leave() {
    this.pipeline.leaving = true;
  }

  private async stopListeners(force: boolean) {
    this.http.stop(force);
    await Promise.all([this.http1.stop(force), this.https?.stop(force)]);
  }

  /** Stops at once, cutting what is open (a start-up that failed half way). */
  abort() {
    void this.stopListeners(true);
  }

  /**
   * Stops accepting and lets what is in flight finish (WebSockets get 1001 at
   * once) within `graceMs`, then cuts the rest. True when everything finished.
   */
  async drain(graceMs: number): Promise<boolean> {
    this.http1.closeWebSockets(1001, "server shutting down");
    const graceful = this.stopListeners(false).then(() => "done" as const);
    const outcome = await Promise.race([graceful, Bun.sleep(graceMs).then(() => "timeout" as const)]);
    if (outcome === "timeout") {
      // Requests still held by a pause get an answer (503) rather than a cut connection.
      for (const service of this.options.routes.all()) service.pause.releaseForShutdown();
      await Promise.race([graceful, Bun.sleep(PAUSED_ANSWER_MS)]);
      await this.stopListeners(true);
    }
    this.pool.close();
    return outcome === "done";
  }
}

/**
 * Whether a TLS handshake for `serverName` goes on. A name no service
 * answers for fails the handshake; a client without SNI gets the fallback
 * certificate. A first connection for a host whose certificate is being
 * issued waits for it. A host of an on-demand service is asked about first.
 */
async function admit(routes: Routes, certificates: CertificateView, serverName: string | undefined): Promise<boolean> {
  // An IP address is not a valid SNI name (RFC 6066 §3), but some clients
  // (wrk) send one: treated as no name, the fallback certificate.
  if (!serverName || isIP(serverName)) return true;
  if (!routes.router.servesHost(serverName)) return false;
  if (certificates.has(serverName)) return true;
  // An on-demand host without a certificate goes on only once its service's URL allows it.
  const onDemand = onDemandServiceFor(routes.router, serverName);
  if (onDemand && !(await certificates.requestOnDemand(serverName, onDemand.name))) return false;
  await certificates.waitFor(serverName, CERTIFICATE_WAIT_MS);
  return true;
}
