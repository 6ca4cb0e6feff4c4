// `parachute run`: restore state, open the listeners, open the admin socket,
// and shut down gracefully on SIGTERM/SIGINT (SPEC §2).
import * as fs from "node:fs";
import { isIP } from "node:net";
import type { Server } from "bun";
import { createAdminApp } from "../admin/app.ts";
import type { RunOptions } from "../config.ts";
import { log } from "../log.ts";
import { metrics } from "../metrics.ts";
import { Registry } from "../service/registry.ts";
import { StateStore } from "../state/store.ts";
import { AcmeIssuer } from "../tls/acme.ts";
import { CertificateCache, fallbackCertificate } from "../tls/certificates.ts";
import { CertificateManager, DEFAULT_RENEWAL } from "../tls/manager.ts";
import * as path from "node:path";
import { Http1Server, listenHttp } from "../data/http1-server.ts";
import { HttpsListener } from "../data/https.ts";
import { Pipeline, type TlsContext } from "../data/pipeline.ts";
import { UpstreamPool } from "../data/upstream.ts";

export class StartupError extends Error {}

const SHUTDOWN_GRACE_MS = 10_000;
/** How long a TLS handshake or an HTTPS redirect waits for a certificate still being issued. */
const CERTIFICATE_WAIT_MS = 30_000;

/** Is a live server answering on this socket? */
async function socketIsLive(socket: string): Promise<boolean> {
  try {
    const res = await fetch("http://parachute/health", { unix: socket, signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

/** A stale socket left by a dead server is replaced; a live one means another server runs. */
async function claimSocket(socket: string) {
  if (!fs.existsSync(socket)) return;
  if (await socketIsLive(socket)) {
    throw new StartupError(`another parachute is already running on ${socket}`);
  }
  fs.rmSync(socket, { force: true });
}

function listenError(what: string, port: number, error: unknown): StartupError {
  const code = (error as { code?: string }).code;
  if (code === "EADDRINUSE") return new StartupError(`${what} port ${port} is already in use`);
  if (code === "EACCES") return new StartupError(`no permission to listen on ${what} port ${port}`);
  return new StartupError(`cannot listen on ${what} port ${port}: ${(error as Error).message}`);
}

function listen<T>(what: string, port: number, start: () => T): T {
  try {
    return start();
  } catch (error) {
    throw listenError(what, port, error);
  }
}

export async function runServer(options: RunOptions): Promise<void> {
  log.setDebug(options.debug);
  try {
    fs.mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new StartupError(`cannot create state directory ${options.stateDir}: ${(error as Error).message}`);
  }
  const store = new StateStore(options.stateDir);
  try {
    store.checkWritable();
  } catch (error) {
    throw new StartupError(`state directory ${options.stateDir} is not writable: ${(error as Error).message}`);
  }
  await claimSocket(options.socket);

  const certsDir = path.join(options.stateDir, "certs");
  let issuer: AcmeIssuer;
  try {
    issuer = new AcmeIssuer(certsDir, options.acme);
  } catch (error) {
    throw new StartupError(`cannot read PARACHUTE_ACME_CA ${options.acme.caFile}: ${(error as Error).message}`);
  }
  const certificates = new CertificateManager(new CertificateCache(certsDir), issuer, {
    ...DEFAULT_RENEWAL,
    renewBeforeMs: options.acme.renewBeforeMs,
    checkIntervalMs: options.acme.checkIntervalMs,
    backoffMs: options.acme.retryBackoffMs,
  });
  const registry = new Registry(store, certificates);

  // The data plane: one pipeline, one HTTP/1 server for plain HTTP and for
  // HTTPS terminated by the TLS front, and the HTTP/2 server behind it.
  const pool = new UpstreamPool();
  const tlsContext: TlsContext = { certificates, httpsPort: 0 };
  const pipeline = new Pipeline(registry, tlsContext, pool);
  const http1 = new Http1Server(pipeline);

  // HTTPS first: its port must be known for redirects before traffic flows.
  let https: HttpsListener | undefined;
  if (options.httpsPort > 0) {
    https = new HttpsListener({
      port: options.httpsPort,
      hostname: options.bind,
      pipeline,
      http1,
      fallback: fallbackCertificate(),
      // A name no service answers for fails the handshake; a client without
      // SNI gets the fallback certificate. A first connection for a host
      // whose certificate is being issued waits for it.
      admit: async (serverName) => {
        // An IP address is not a valid SNI name (RFC 6066 §3), but some
        // clients (wrk) send one: treated as no name, the fallback certificate.
        if (!serverName || isIP(serverName)) return true;
        if (!registry.router.servesHost(serverName)) return false;
        if (!certificates.has(serverName)) await certificates.waitFor(serverName, CERTIFICATE_WAIT_MS);
        return true;
      },
    });
    const listener = https;
    listen("HTTPS", options.httpsPort, () => listener.start());
    tlsContext.httpsPort = listener.boundPort;
    certificates.onChange = () => listener.update(certificates.entries());
  }
  registry.restore();
  certificates.start();

  let http: ReturnType<typeof listenHttp>;
  try {
    http = listen("HTTP", options.httpPort, () => listenHttp({ port: options.httpPort, hostname: options.bind }, http1));
  } catch (error) {
    void https?.stop(true);
    throw error;
  }

  const stopListeners = async (force: boolean) => {
    http.stop(force);
    await Promise.all([http1.stop(force), https?.stop(force)]);
  };

  // The metrics listener only ever answers /metrics: no proxied traffic.
  metrics.source = registry;
  const metricsServer =
    options.metricsPort > 0
      ? listen("metrics", options.metricsPort, () =>
          Bun.serve({
            port: options.metricsPort,
            hostname: options.bind,
            reusePort: false,
            development: false,
            fetch: (req) =>
              new URL(req.url).pathname === "/metrics"
                ? new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } })
                : new Response("Not Found\n", { status: 404 }),
          }),
        )
      : undefined;

  const admin = createAdminApp(registry);
  let adminServer: Server<unknown>;
  try {
    // idleTimeout 0: a deploy may wait minutes between two progress lines
    // (a failing health check, a long drain); Bun's 10 s default would cut it.
    // Bun honours it on unix sockets, but its types omit it there, hence the cast.
    const adminOptions = { unix: options.socket, development: false, idleTimeout: 0, fetch: admin.fetch };
    adminServer = Bun.serve(adminOptions as never);
    fs.chmodSync(options.socket, 0o600);
  } catch (error) {
    void stopListeners(true);
    metricsServer?.stop(true);
    throw new StartupError(`cannot open admin socket ${options.socket}: ${(error as Error).message}`);
  }

  log.info("Server started", {
    http_port: http.port,
    https_port: https?.boundPort ?? 0,
    metrics_port: metricsServer?.port ?? 0,
    socket: options.socket,
    state_dir: options.stateDir,
    pid: process.pid,
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("Shutting down", { signal, in_flight: http1.pendingRequests + (https?.pendingRequests ?? 0) });
    adminServer.stop(true);
    metricsServer?.stop(true);
    certificates.stop();
    // WebSockets would hold a graceful stop open until the grace period ends.
    http1.closeWebSockets(1001, "server shutting down");
    const graceful = stopListeners(false).then(() => "done" as const);
    const outcome = await Promise.race([graceful, Bun.sleep(SHUTDOWN_GRACE_MS).then(() => "timeout" as const)]);
    if (outcome === "timeout") await stopListeners(true);
    registry.dispose();
    pool.close();
    log.info("Server stopped", { graceful: outcome === "done" });
    log.flush();
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  // A stray error in one request or command must not take every service
  // down with it: it is logged, and the proxy keeps serving.
  const survive = (kind: string) => (error: unknown) =>
    log.error("Unhandled error", { kind, error: (error as Error)?.message ?? String(error) });
  process.on("unhandledRejection", survive("rejection"));
  process.on("uncaughtException", survive("exception"));
}
