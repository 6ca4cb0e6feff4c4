// `parachute run`: restore state, open the listeners, open the admin socket,
// and shut down gracefully on SIGTERM/SIGINT (README "Configuration"). With one worker this
// process also carries the traffic; with more, it is the control plane and
// the workers carry it (README "Workers"). Started by a running parachute's
// `upgrade`, it takes over that one's sockets (upgrade.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import type { Server } from "bun";
import { createAdminApp } from "../admin/app.ts";
import type { UpgradeRequest } from "../admin/requests.ts";
import type { RunOptions } from "../config.ts";
import { log } from "../log.ts";
import { metrics } from "../metrics.ts";
import { CommandError, type Progress, Registry } from "../service/registry.ts";
import { StateStore } from "../state/store.ts";
import { AcmeIssuer } from "../tls/acme.ts";
import { CertificateCache } from "../tls/certificates.ts";
import { CertificateManager, DEFAULT_RENEWAL } from "../tls/manager.ts";
import { listenTcp } from "../data/http1-server.ts";
import { inheritedWorkerSettings, type TlsState } from "../workers/protocol.ts";
import { WorkerPool } from "../workers/pool.ts";
import { runWorker } from "../workers/worker.ts";
import { DataPlaneListeners, listen, StartupError } from "./data-plane.ts";
import { becomeAnchor, writePidFile } from "./anchor.ts";
import { holdListeningSocket, releaseListeningSocket } from "./listening-socket.ts";
import { announceReady, inheritedHandover, privateSocketPath, startSuccessor, type Handover, type Successor } from "./upgrade.ts";

export { StartupError };

const SHUTDOWN_GRACE_MS = 10_000;
/** How often a server that has handed over looks for a resume or stop its successor saved. */
const FOLLOW_SAVED_MS = 100;

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

/**
 * Throws the bind error if something holds `port` (it is bound exclusively,
 * then let go). A start checks its ports before it restores the state; and
 * the metrics port, shared with a successor during an upgrade (SO_REUSEPORT,
 * since Bun.serve cannot adopt a socket), cannot rely on its own bind failing.
 */
function checkPortFree(what: string, port: number, hostname: string | undefined) {
  listen(what, port, () => listenTcp({ port, hostname }, (transport) => transport.destroy()).stop(true));
}

/** Where the proxied traffic runs: in this process, or in workers. The rest of the server treats both alike. */
interface Traffic {
  httpPort: number;
  httpsPort: number;
  /** The listening sockets, for a successor. */
  fds: { httpFd: number | undefined; httpsFd: number | undefined };
  /** Fields for the "Server started" line. */
  describe(): Record<string, unknown>;
  /** The /metrics text. */
  metrics(): Promise<string>;
  /** Stops accepting and lets what is in flight finish within `graceMs`; true when it all did. */
  drain(graceMs: number): Promise<boolean>;
  abort(): void;
}

interface TrafficSetup {
  options: RunOptions;
  handover: Handover | undefined;
  certificates: CertificateManager;
  /** Restores the state into the registry (made with the given data plane) and returns it. */
  registry(pool?: WorkerPool): Registry;
}

/** One process: the data plane runs here, on its own listeners. */
function trafficHere({ options, handover, certificates, registry: makeRegistry }: TrafficSetup): { traffic: Traffic; registry: Registry } {
  // The state is restored before the listeners open (their first request must
  // find it), so a port that is taken is found first: the start fails before
  // it has restored (and logged) anything.
  if (!handover) {
    if (options.httpPort > 0) checkPortFree("HTTP", options.httpPort, options.bind);
    if (options.httpsPort > 0) checkPortFree("HTTPS", options.httpsPort, options.bind);
  }
  const registry = makeRegistry();
  const listeners = new DataPlaneListeners({
    routes: registry,
    certificates,
    hostname: options.bind,
    httpPort: handover ? handover.httpPort : options.httpPort,
    httpsPort: handover ? handover.httpsPort : options.httpsPort,
    httpFd: handover?.httpFd,
    httpsFd: handover?.httpsFd,
  });
  const https = listeners.https;
  if (https) {
    https.update(certificates.entries());
    certificates.onChange = () => https.update(certificates.entries());
  }
  const traffic: Traffic = {
    httpPort: listeners.httpPort,
    httpsPort: listeners.httpsPort,
    fds: listeners.fds,
    describe: () => ({}),
    metrics: async () => metrics.render(),
    drain: (graceMs) => listeners.drain(graceMs),
    abort: () => listeners.abort(),
  };
  return { traffic, registry };
}

/** The control plane: it holds the listening sockets and the workers accept on them. */
async function trafficInWorkers({ options, handover, certificates, registry: makeRegistry }: TrafficSetup): Promise<{ traffic: Traffic; registry: Registry }> {
  const hold = (what: string, port: number) => listen(what, port, () => holdListeningSocket(port, options.bind));
  const http = handover ? { fd: handover.httpFd, port: handover.httpPort } : hold("HTTP", options.httpPort);
  const https = handover
    ? handover.httpsFd !== undefined ? { fd: handover.httpsFd, port: handover.httpsPort } : undefined
    : options.httpsPort > 0 ? hold("HTTPS", options.httpsPort) : undefined;
  if (http.fd === undefined) throw new StartupError("the predecessor handed over no HTTP socket");
  const pool = new WorkerPool({ count: options.workers, httpFd: http.fd, httpsFd: https?.fd, httpsPort: https?.port ?? 0 });
  const tlsState = (): TlsState => ({
    certificates: certificates.entries(),
    issuing: certificates.issuingHosts(),
    challenges: [...certificates.issuer.challenges],
  });
  const publishTls = () => pool.publishTls(tlsState());
  certificates.onChange = () => void publishTls();
  certificates.onIssuingChange = () => void publishTls();
  certificates.issuer.onChallengesChange = publishTls;
  const registry = makeRegistry(pool);
  // The workers' first state, which they get before they accept.
  void pool.publish(registry.routingState());
  void publishTls();
  try {
    await pool.start();
  } catch (error) {
    pool.kill();
    throw new StartupError((error as Error).message);
  }
  const traffic: Traffic = {
    httpPort: http.port,
    httpsPort: https?.port ?? 0,
    fds: { httpFd: http.fd, httpsFd: https?.fd },
    describe: () => ({ workers: options.workers, worker_pids: pool.pids }),
    metrics: async () => metrics.render(await pool.samples()),
    drain: async (graceMs) => {
      // Once the workers close theirs too, the ports refuse new connections.
      for (const fd of [http.fd, https?.fd]) if (fd !== undefined) releaseListeningSocket(fd);
      return pool.stop(graceMs);
    },
    abort: () => pool.kill(),
  };
  return { traffic, registry };
}

export async function runServer(options: RunOptions): Promise<void> {
  log.setDebug(options.debug);
  let handover: Handover | undefined;
  try {
    const worker = inheritedWorkerSettings();
    if (worker) return await runWorker(worker);
    handover = inheritedHandover();
  } catch (error) {
    if (error instanceof StartupError) throw error;
    throw new StartupError((error as Error).message);
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
  const setup: TrafficSetup = {
    options,
    handover,
    certificates,
    registry: (pool) => {
      const registry = new Registry(store, certificates, pool);
      registry.restore();
      certificates.start();
      return registry;
    },
  };
  const metricsPort = handover ? handover.metricsPort : options.metricsPort;
  if (!handover && metricsPort > 0) checkPortFree("metrics", metricsPort, options.bind);
  const { traffic, registry } = options.workers > 1 ? await trafficInWorkers(setup) : trafficHere(setup);
  /** The pid of the server serving now (the anchor follows it). */
  const pidFile = path.join(options.stateDir, "parachute.pid");

  // The metrics listener only ever answers /metrics: no proxied traffic.
  metrics.source = registry;
  let metricsServer: Server<unknown> | undefined;
  try {
    metricsServer =
      metricsPort > 0
        ? listen("metrics", metricsPort, () =>
            Bun.serve({
              port: metricsPort,
              hostname: options.bind,
              reusePort: true,
              development: false,
              fetch: async (req) =>
                new URL(req.url).pathname === "/metrics"
                  ? new Response(await traffic.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } })
                  : new Response("Not Found\n", { status: 404 }),
            }),
          )
        : undefined;
  } catch (error) {
    traffic.abort();
    throw error;
  }

  let stopping = false;
  /** Lets what is in flight finish (WebSockets get 1001 at once), within `graceMs`, then cuts the rest. */
  const drain = async (graceMs: number): Promise<boolean> => {
    certificates.stop();
    const graceful = await traffic.drain(graceMs);
    registry.dispose();
    return graceful;
  };

  let upgrading = false;
  const upgrade = async (request: UpgradeRequest, progress: Progress) => {
    if (upgrading || stopping) throw new CommandError(upgrading ? "an upgrade is already running" : "parachute is shutting down", 409);
    upgrading = true;
    await registry.freeze("parachute is being upgraded; run the command again when the upgrade is done");
    /** The upgrade did not happen: commands are accepted again, and the command fails with the reason. */
    const abandon = (reason: string) => {
      log.error("Upgrade failed", { reason });
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
      successor = startSuccessor({ httpPort: traffic.httpPort, httpsPort: traffic.httpsPort, metricsPort: metricsServer?.port ?? 0, ...traffic.fds }, request.readyTimeout);
      log.info("Upgrading", { new_pid: successor.pid });
      progress(`Starting the new parachute (pid ${successor.pid})`);
      const socket = await successor.ready;
      // From here on the successor answers commands and owns the state.
      fs.renameSync(socket, options.socket);
      writePidFile(pidFile, successor.pid);
    } catch (error) {
      successor?.kill();
      throw abandon(`upgrade failed, this parachute (pid ${process.pid}) goes on serving: ${(error as Error).message}`);
    }
    log.info("Handing over", { to_pid: successor.pid });
    progress(`The new parachute (pid ${successor.pid}) is serving; the old one (pid ${process.pid}) finishes its requests`);
    stopping = true;
    metricsServer?.stop(true);
    const adminClosed = adminServer.stop(false);
    const following = setInterval(() => void registry.followSaved(), FOLLOW_SAVED_MS);
    const graceful = await drain(request.drainTimeout);
    clearInterval(following);
    progress(graceful ? "The old parachute has finished its requests" : `The old parachute cut what was still in flight after ${request.drainTimeout / 1000}s`);
    // This command's own answer is the last thing the old server sends. The
    // process that was started stays, as the anchor; a successor exits.
    void Promise.race([adminClosed, Bun.sleep(SHUTDOWN_GRACE_MS)]).then(() => {
      const fields = { graceful, upgraded_to: successor.pid };
      if (handover) return exit(fields);
      log.info("Server stopped", fields);
      becomeAnchor({ pidFile, successor });
    });
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
    traffic.abort();
    metricsServer?.stop(true);
    throw new StartupError(`cannot open admin socket ${options.socket}: ${(error as Error).message}`);
  }

  if (!handover) writePidFile(pidFile, process.pid);
  log.info("Server started", {
    http_port: traffic.httpPort,
    https_port: traffic.httpsPort,
    metrics_port: metricsServer?.port ?? 0,
    socket: options.socket,
    state_dir: options.stateDir,
    pid: process.pid,
    ...traffic.describe(),
    ...(handover ? { upgraded_from: handover.from } : {}),
  });

  const exit = (fields: Record<string, unknown>) => {
    // The first process, stopping for good, leaves no pid behind. (A successor
    // leaves it: after an upgrade it names the next one, and at the end the
    // anchor reads it to know this server has ended, then removes it.)
    if (!handover && !("upgraded_to" in fields)) fs.rmSync(pidFile, { force: true });
    log.info("Server stopped", fields);
    log.flush();
    process.exit(0);
  };
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("Shutting down", { signal });
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
