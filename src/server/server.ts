// `parachute run`: restore state, open the listeners, open the admin socket,
// and shut down gracefully on SIGTERM/SIGINT (SPEC §2). Started by a running
// parachute's `upgrade`, it takes over that one's sockets (upgrade.ts).
import * as fs from "node:fs";
import { isIP } from "node:net";
import type { Server } from "bun";
import { createAdminApp } from "../admin/app.ts";
import type { UpgradeRequest } from "../admin/requests.ts";
import type { RunOptions } from "../config.ts";
import { log } from "../log.ts";
import { metrics } from "../metrics.ts";
import { CommandError, type Progress, Registry } from "../service/registry.ts";
import { StateStore } from "../state/store.ts";
import { AcmeIssuer } from "../tls/acme.ts";
import { CertificateCache, fallbackCertificate } from "../tls/certificates.ts";
import { CertificateManager, DEFAULT_RENEWAL } from "../tls/manager.ts";
import * as path from "node:path";
import { Http1Server, listenerFd, listenHttp, listenTcp } from "../data/http1-server.ts";
import { HttpsListener } from "../data/https.ts";
import { Pipeline, type TlsContext } from "../data/pipeline.ts";
import { UpstreamPool } from "../data/upstream.ts";
import { announceReady, HandoverError, inheritedHandover, privateSocketPath, startSuccessor, type Handover, type Successor } from "./upgrade.ts";

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

/**
 * The metrics port is shared with a successor during an upgrade (SO_REUSEPORT;
 * Bun.serve cannot adopt a socket), so it cannot rely on the bind failing:
 * a normal start first checks that nothing else holds it.
 */
function checkPortFree(port: number, hostname: string | undefined) {
  listenTcp({ port, hostname }, (transport) => transport.destroy()).stop(true);
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
  let handover: Handover | undefined;
  try {
    handover = inheritedHandover();
  } catch (error) {
    if (error instanceof HandoverError) throw new StartupError(error.message);
    throw error;
  }
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
  // A successor shares the socket path with the predecessor that started it.
  if (!handover) await claimSocket(options.socket);

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

  const httpPort = handover ? handover.httpPort : options.httpPort;
  const httpsPort = handover ? handover.httpsPort : options.httpsPort;
  const metricsPort = handover ? handover.metricsPort : options.metricsPort;

  // HTTPS first: its port must be known for redirects before traffic flows.
  let https: HttpsListener | undefined;
  if (handover ? handover.httpsFd !== undefined : httpsPort > 0) {
    https = new HttpsListener({
      port: httpsPort,
      hostname: options.bind,
      fd: handover?.httpsFd,
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
    listen("HTTPS", httpsPort, () => listener.start());
    tlsContext.httpsPort = listener.boundPort;
    certificates.onChange = () => listener.update(certificates.entries());
  }
  registry.restore();
  certificates.start();

  let http: ReturnType<typeof listenHttp>;
  try {
    http = listen("HTTP", httpPort, () => listenHttp({ port: httpPort, hostname: options.bind, fd: handover?.httpFd }, http1));
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
    metricsPort > 0
      ? listen("metrics", metricsPort, () => {
          if (!handover) checkPortFree(metricsPort, options.bind);
          return Bun.serve({
            port: metricsPort,
            hostname: options.bind,
            reusePort: true,
            development: false,
            fetch: (req) =>
              new URL(req.url).pathname === "/metrics"
                ? new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } })
                : new Response("Not Found\n", { status: 404 }),
          });
        })
      : undefined;

  let stopping = false;
  const inFlight = () => http1.pendingRequests + (https?.pendingRequests ?? 0);
  /** Lets what is in flight finish (WebSockets get 1001 at once), within `graceMs`, then cuts the rest. */
  const drain = async (graceMs: number): Promise<boolean> => {
    certificates.stop();
    http1.closeWebSockets(1001, "server shutting down");
    const graceful = stopListeners(false).then(() => "done" as const);
    const outcome = await Promise.race([graceful, Bun.sleep(graceMs).then(() => "timeout" as const)]);
    if (outcome === "timeout") await stopListeners(true);
    registry.dispose();
    pool.close();
    return outcome === "done";
  };

  let upgrading = false;
  const upgrade = async (request: UpgradeRequest, progress: Progress) => {
    if (upgrading || stopping) throw new CommandError(upgrading ? "an upgrade is already running" : "parachute is shutting down", 409);
    // The container ends with its first process, and would take the successor with it.
    if (process.pid === 1) throw new CommandError("parachute is the container's first process (PID 1): an upgrade would stop the container; see the README on upgrading in Docker", 409);
    upgrading = true;
    await registry.freeze("parachute is being upgraded; run the command again when the upgrade is done");
    /** The upgrade did not happen: commands are accepted again, and the command fails with the reason. */
    const abandon = (reason: string) => {
      registry.thaw();
      upgrading = false;
      return new CommandError(reason, 500);
    };
    try {
      registry.save();
    } catch (error) {
      throw abandon(`cannot save the state before the upgrade, nothing changed: ${(error as Error).message}`);
    }
    let successor: Successor | undefined;
    try {
      successor = startSuccessor(
        { httpPort: http.port || httpPort, httpsPort: https?.boundPort ?? 0, metricsPort: metricsServer?.port ?? 0, httpFd: listenerFd(http), httpsFd: https?.fd },
        request.readyTimeout,
      );
      log.info("Upgrading", { new_pid: successor.pid });
      progress(`Starting the new parachute (pid ${successor.pid})`);
      const socket = await successor.ready;
      // From here on the successor answers commands and owns the state.
      fs.renameSync(socket, options.socket);
    } catch (error) {
      successor?.kill();
      throw abandon(`upgrade failed, this parachute (pid ${process.pid}) goes on serving: ${(error as Error).message}`);
    }
    log.info("Handing over", { to_pid: successor.pid, in_flight: inFlight() });
    progress(`The new parachute (pid ${successor.pid}) is serving; the old one (pid ${process.pid}) finishes its requests`);
    stopping = true;
    metricsServer?.stop(true);
    const adminClosed = adminServer.stop(false);
    const graceful = await drain(request.drainTimeout);
    progress(graceful ? "The old parachute has finished its requests" : `The old parachute cut what was still in flight after ${request.drainTimeout / 1000}s`);
    // This command's own answer is the last thing the old process sends.
    void Promise.race([adminClosed, Bun.sleep(SHUTDOWN_GRACE_MS)]).then(() => exit({ graceful, upgraded_to: successor.pid }));
  };

  const admin = createAdminApp(registry, { upgrade });
  let adminServer: Server<unknown>;
  const adminPath = privateSocketPath(options.socket);
  try {
    // idleTimeout 0: a deploy may wait minutes between two progress lines
    // (a failing health check, a long drain); Bun's 10 s default would cut it.
    // Bun honours it on unix sockets, but its types omit it there, hence the cast.
    const adminOptions = { unix: adminPath, development: false, idleTimeout: 0, fetch: admin.fetch };
    adminServer = Bun.serve(adminOptions as never);
    fs.chmodSync(adminPath, 0o600);
    // A successor's socket is moved into place by its predecessor, once it is ready.
    if (!handover) fs.renameSync(adminPath, options.socket);
  } catch (error) {
    void stopListeners(true);
    metricsServer?.stop(true);
    throw new StartupError(`cannot open admin socket ${options.socket}: ${(error as Error).message}`);
  }

  log.info("Server started", {
    http_port: http.port || httpPort,
    https_port: https?.boundPort ?? 0,
    metrics_port: metricsServer?.port ?? 0,
    socket: options.socket,
    state_dir: options.stateDir,
    pid: process.pid,
    ...(handover ? { upgraded_from: handover.from } : {}),
  });

  const exit = (fields: Record<string, unknown>) => {
    log.info("Server stopped", fields);
    log.flush();
    process.exit(0);
  };
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("Shutting down", { signal, in_flight: inFlight() });
    adminServer.stop(true);
    metricsServer?.stop(true);
    exit({ graceful: await drain(SHUTDOWN_GRACE_MS) });
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  // A stray error in one request or command must not take every service
  // down with it: it is logged, and the proxy keeps serving.
  const survive = (kind: string) => (error: unknown) =>
    log.error("Unhandled error", { kind, error: (error as Error)?.message ?? String(error) });
  process.on("unhandledRejection", survive("rejection"));
  process.on("uncaughtException", survive("exception"));

  if (handover) await announceWhenServing(adminPath);
}

/** A successor checks its own admin socket answers, then tells its predecessor it is ready. */
async function announceWhenServing(adminPath: string) {
  const res = await fetch("http://parachute/health", { unix: adminPath, signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new StartupError(`own admin socket answered HTTP ${res.status}`);
  await res.body?.cancel();
  announceReady(adminPath);
}
