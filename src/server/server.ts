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
import { proxyProtocolPolicy, proxySettings, type RunOptions } from "../config.ts";
import { log, surviveStrayErrors } from "../log.ts";
import { formatDuration } from "../values.ts";
import { metrics, type RequestSamples } from "../metrics.ts";
import { CommandError, type Progress } from "../service/command-error.ts";
import { Registry } from "../service/registry.ts";
import { StateStore } from "../state/store.ts";
import { createStatusApp, isLoopback } from "../status/app.ts";
import { TrafficSampler } from "../status/sampler.ts";
import { AcmeIssuer } from "../tls/acme.ts";
import { CertificateCache } from "../tls/certificates.ts";
import { Fleet } from "../tls/fleet.ts";
import { CertificateManager, DEFAULT_RENEWAL } from "../tls/manager.ts";
import { OnDemandGate } from "../tls/on-demand.ts";
import { OrderQueue } from "../tls/order-queue.ts";
import { listenTcp } from "../data/http1-server.ts";
import { inheritedWorkerSettings, type TlsSnapshot } from "../workers/protocol.ts";
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
  /** The request series /metrics renders, one per process carrying traffic (the status page's charts). */
  samples(): Promise<RequestSamples[]>;
  /** The published health check answers 503 from now on; traffic goes on. */
  leave(): void;
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
    settings: proxySettings(options),
    proxyProtocol: proxyProtocolPolicy(options),
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
    samples: async () => [metrics.requestSamples()],
    leave: () => listeners.leave(),
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
  const pool = new WorkerPool({ count: options.workers, httpFd: http.fd, httpsFd: https?.fd, httpsPort: https?.port ?? 0, proxy: proxySettings(options), proxyProtocol: proxyProtocolPolicy(options) });
  const tlsState = (): TlsSnapshot => ({
    certificates: certificates.entries(),
    issuing: certificates.issuingHosts(),
    challenges: [...certificates.issuer.challenges],
    alpnChallenges: [...certificates.issuer.alpnChallenges].map(([host, c]) => ({ host, ...c })),
  });
  const publishTls = () => pool.publishTls(tlsState());
  certificates.onChange = () => void publishTls();
  certificates.onIssuingChange = () => void publishTls();
  certificates.onChallengesChange = publishTls;
  pool.onDemand = (host, service) => certificates.requestOnDemand(host, service);
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
    samples: () => pool.samples(),
    leave: () => pool.leave(),
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
  const role = inheritedRole();
  if (role.worker) return await runWorker(role.worker, options.tlsAcmeCachePath);
  const handover = role.handover;
  const store = openStateDir(options.stateDir);
  // A successor shares the socket path with the predecessor that started it.
  if (!handover) await claimSocket(options.socket);
  const certificates = certificateManager(options);
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
  const statusPort = handover ? handover.statusPort : options.statusPort;
  if (!handover && statusPort > 0) checkPortFree("status", statusPort, options.statusBind);
  const { traffic, registry } = options.workers > 1 ? await trafficInWorkers(setup) : trafficHere(setup);
  metrics.source = registry;
  const server = new RunningServer(options, handover, registry, traffic, certificates);
  server.open(metricsPort, statusPort);
  log.info("Server started", {
    http_port: traffic.httpPort,
    https_port: traffic.httpsPort,
    metrics_port: server.metricsPort,
    ...(server.statusPort ? { status_port: server.statusPort, status_bind: options.statusBind } : {}),
    socket: options.socket,
    state_dir: options.stateDir,
    ...(options.tlsAcmeCachePath ? { acme_cache: options.tlsAcmeCachePath } : {}),
    pid: process.pid,
    ...proxyProtocolFields(options),
    ...traffic.describe(),
    ...(handover ? { upgraded_from: handover.from } : {}),
  });
  process.on("SIGTERM", () => void server.shutdown("SIGTERM"));
  process.on("SIGINT", () => void server.shutdown("SIGINT"));
  surviveStrayErrors();
  if (handover) await announceWhenServing(server.adminPath);
}

/** The "Server started" fields saying whether the listeners expect PROXY protocol headers, and from whom. */
function proxyProtocolFields(options: RunOptions): Record<string, unknown> {
  const policy = proxyProtocolPolicy(options);
  if (!policy) return {};
  return { proxy_protocol: true, proxy_protocol_from: policy.from.length ? policy.from : "any" };
}

/** What this process was started as: a worker, a successor in an upgrade (with its handover), or a first server. */
function inheritedRole(): { worker?: ReturnType<typeof inheritedWorkerSettings>; handover?: Handover } {
  try {
    const worker = inheritedWorkerSettings();
    if (worker) return { worker };
    return { handover: inheritedHandover() };
  } catch (error) {
    if (error instanceof StartupError) throw error;
    throw new StartupError((error as Error).message);
  }
}

/** The state directory, created 0700 and checked writable now rather than at the first deploy. */
function openStateDir(dir: string): StateStore {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new StartupError(`cannot create state directory ${dir}: ${(error as Error).message}`);
  }
  const store = new StateStore(dir);
  try {
    store.checkWritable();
  } catch (error) {
    throw new StartupError(`state directory ${dir} is not writable: ${(error as Error).message}`);
  }
  return store;
}

/** The ACME cache a fleet shares (`--tls-acme-cache-path`), created 0700 and checked writable now rather than at the first order. */
function openSharedCache(dir: string): CertificateCache {
  const cache = new CertificateCache(dir);
  try {
    cache.ensureDir();
  } catch (error) {
    throw new StartupError(`cannot create ACME cache directory ${dir}: ${(error as Error).message}`);
  }
  const probe = path.join(dir, `.write-check-${process.pid}-${Date.now()}`);
  try {
    fs.writeFileSync(probe, "", { mode: 0o600 });
    fs.rmSync(probe, { force: true });
  } catch (error) {
    throw new StartupError(`ACME cache directory ${dir} is not writable: ${(error as Error).message}`);
  }
  return cache;
}

function certificateManager(options: RunOptions): CertificateManager {
  const shared = options.tlsAcmeCachePath;
  const certsDir = shared ?? path.join(options.stateDir, "certs");
  const cache = shared ? openSharedCache(shared) : new CertificateCache(certsDir);
  let issuer: AcmeIssuer;
  try {
    issuer = new AcmeIssuer(certsDir, options.acme);
  } catch (error) {
    throw new StartupError(`cannot read PARACHUTE_ACME_CA ${options.acme.caFile}: ${(error as Error).message}`);
  }
  const renewal = {
    ...DEFAULT_RENEWAL,
    renewBeforeMs: options.acme.renewBeforeMs,
    checkIntervalMs: options.acme.checkIntervalMs,
    backoffMs: options.acme.retryBackoffMs,
  };
  return new CertificateManager(cache, issuer, renewal, shared ? new Fleet(cache) : undefined, new OnDemandGate(options.acme.onDemandRate), new OrderQueue(options.acme.concurrency));
}

/**
 * What the metrics and status listeners answer a request their handler
 * could not take (Bun cannot give the URL of an HTTP/1.0 request without a
 * Host): a plain 400, never an error page with a stack.
 */
function badRequest(error: Error): Response {
  log.debug("Bad request on an own listener", { error: error.message });
  return new Response("Bad Request\n", { status: 400, headers: { "content-type": "text/plain" } });
}

/** Whether Bun can give the request's URL: an HTTP/1.0 request without a Host has none. */
function hasUrl(req: Request): boolean {
  try {
    return Boolean(new URL(req.url));
  } catch {
    return false;
  }
}

/** The metrics listener: it only ever answers /metrics, never proxied traffic. */
function serveMetrics(port: number, hostname: string | undefined, traffic: Traffic): Server<unknown> {
  return listen("metrics", port, () =>
    Bun.serve({
      port,
      hostname,
      reusePort: true,
      development: false,
      fetch: async (req) =>
        new URL(req.url).pathname === "/metrics"
          ? new Response(await traffic.metrics(), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } })
          : new Response("Not Found\n", { status: 404 }),
      error: badRequest,
    }),
  );
}

/**
 * The status page's listener (README "Status page"): its own port, never a
 * proxied one, bound to a loopback address unless the operator chose another.
 * Its charts' sampler reads only while someone looks.
 */
function serveStatus(port: number, hostname: string, traffic: Traffic, registry: Registry, certificates: CertificateManager): { server: Server<unknown>; sampler: TrafficSampler } {
  const sampler = new TrafficSampler(() => traffic.samples());
  const app = createStatusApp({
    sources: { services: () => registry.list({ checkTimes: true }), tlsHosts: () => certificates.hosts(), history: (service) => registry.historyOf(service) ?? [] },
    sampler,
    loopbackOnly: isLoopback(hostname) || hostname === "localhost",
  });
  // idleTimeout: an event stream writes every second; 30 s covers a slow worker scrape.
  const server = listen("status", port, () =>
    Bun.serve({ port, hostname, reusePort: true, development: false, idleTimeout: 30, fetch: (req, bun) => (hasUrl(req) ? app.fetch(req, { peer: bun.requestIP(req)?.address ?? "" }) : badRequest(new Error("no URL"))), error: badRequest }),
  );
  return { server, sampler };
}

/**
 * A server once its traffic runs: its admin, metrics and status listeners, and the
 * two ways it ends, a shutdown (signal) or an upgrade (handing over to a
 * successor, then draining).
 */
class RunningServer {
  private stopping = false;
  private upgrading = false;
  private metricsServer: Server<unknown> | undefined;
  private status: { server: Server<unknown>; sampler: TrafficSampler } | undefined;
  private adminServer!: Server<unknown>;
  readonly adminPath: string;
  /** The pid of the server serving now (the anchor follows it). */
  private readonly pidFile: string;

  constructor(
    private readonly options: RunOptions,
    private readonly handover: Handover | undefined,
    private readonly registry: Registry,
    private readonly traffic: Traffic,
    private readonly certificates: CertificateManager,
  ) {
    this.adminPath = privateSocketPath(options.socket);
    this.pidFile = path.join(options.stateDir, "parachute.pid");
  }

  get metricsPort(): number {
    return this.metricsServer?.port ?? 0;
  }

  get statusPort(): number {
    return this.status?.server.port ?? 0;
  }

  /** Opens the metrics and status listeners and the admin socket; on failure, stops the traffic too. */
  open(metricsPort: number, statusPort: number) {
    try {
      this.metricsServer = metricsPort > 0 ? serveMetrics(metricsPort, this.options.bind, this.traffic) : undefined;
      this.status = statusPort > 0 ? serveStatus(statusPort, this.options.statusBind, this.traffic, this.registry, this.certificates) : undefined;
    } catch (error) {
      this.traffic.abort();
      this.metricsServer?.stop(true);
      throw error;
    }
    const admin = createAdminApp(this.registry, { upgrade: (request, progress) => this.upgrade(request, progress) });
    try {
      // idleTimeout 0: a deploy may wait minutes between two progress lines
      // (a failing health check, a long drain); Bun's 10 s default would cut it.
      // Bun honours it on unix sockets, but its types omit it there, hence the cast.
      const adminOptions = { unix: this.adminPath, development: false, idleTimeout: 0, fetch: admin.fetch };
      this.adminServer = Bun.serve(adminOptions as never);
      fs.chmodSync(this.adminPath, 0o600);
      // A successor's socket is moved into place by its predecessor, once it is ready.
      if (!this.handover) fs.renameSync(this.adminPath, this.options.socket);
    } catch (error) {
      this.traffic.abort();
      this.closeListeners();
      throw new StartupError(`cannot open admin socket ${this.options.socket}: ${(error as Error).message}`);
    }
    if (!this.handover) writePidFile(this.pidFile, process.pid);
  }

  /** Closes the metrics and status listeners (their open event streams too). */
  private closeListeners() {
    this.metricsServer?.stop(true);
    this.status?.sampler.stop();
    this.status?.server.stop(true);
  }

  /** Lets what is in flight finish (WebSockets get 1001 at once), within `graceMs`, then cuts the rest. */
  private async drain(graceMs: number): Promise<boolean> {
    this.certificates.stop();
    const graceful = await this.traffic.drain(graceMs);
    this.registry.dispose();
    return graceful;
  }

  /**
   * With the published health check, it answers 503 for the grace first
   * while traffic is served as before, so that the load balancers in front
   * stop sending here before the ports close.
   */
  private async leave() {
    if (!this.options.publishHealthCheck) return;
    this.traffic.leave();
    const grace = this.options.publishHealthCheckGrace;
    log.info("Leaving: the published health check answers 503", { closing_in: formatDuration(grace) });
    await Bun.sleep(grace);
  }

  async shutdown(signal: string) {
    if (this.stopping) return;
    this.stopping = true;
    log.info("Shutting down", { signal });
    this.adminServer.stop(true);
    this.closeListeners();
    await this.leave();
    this.exit({ graceful: await this.drain(SHUTDOWN_GRACE_MS) });
  }

  private exit(fields: Record<string, unknown>): never {
    // The first process, stopping for good, leaves no pid behind. (A successor
    // leaves it: after an upgrade it names the next one, and at the end the
    // anchor reads it to know this server has ended, then removes it.)
    if (!this.handover && !("upgraded_to" in fields)) fs.rmSync(this.pidFile, { force: true });
    log.info("Server stopped", fields);
    log.flush();
    process.exit(0);
  }

  /** `parachute upgrade`: a successor starts on these sockets, takes over, and this server drains (README "Upgrading"). */
  private async upgrade(request: UpgradeRequest, progress: Progress) {
    if (this.upgrading || this.stopping) throw new CommandError(this.upgrading ? "an upgrade is already running" : "parachute is shutting down", 409);
    this.upgrading = true;
    await this.registry.freeze("parachute is being upgraded; run the command again when the upgrade is done");
    const successor = await this.handOver(request, progress);
    log.info("Handing over", { to_pid: successor.pid });
    // The successor accepts on the same sockets already: no grace, but a
    // balancer probing over a connection kept open to this process is told to go.
    this.traffic.leave();
    progress(`The new parachute (pid ${successor.pid}) is serving; the old one (pid ${process.pid}) finishes its requests`);
    this.stopping = true;
    this.closeListeners();
    const adminClosed = this.adminServer.stop(false);
    const following = setInterval(() => void this.registry.followSaved(), FOLLOW_SAVED_MS);
    const graceful = await this.drain(request.drainTimeout);
    clearInterval(following);
    progress(graceful ? "The old parachute has finished its requests" : `The old parachute cut what was still in flight after ${request.drainTimeout / 1000}s`);
    // This command's own answer is the last thing the old server sends. The
    // process that was started stays, as the anchor; a successor exits.
    void Promise.race([adminClosed, Bun.sleep(SHUTDOWN_GRACE_MS)]).then(() => {
      const fields = { graceful, upgraded_to: successor.pid };
      if (this.handover) return this.exit(fields);
      log.info("Server stopped", fields);
      becomeAnchor({ pidFile: this.pidFile, successor });
    });
  }

  /**
   * Saves the state, starts the successor on this server's sockets and waits
   * until it serves; then it owns the admin socket and the state. If any step
   * fails, nothing changed: commands are accepted again and the upgrade
   * fails with the reason.
   */
  private async handOver(request: UpgradeRequest, progress: Progress): Promise<Successor> {
    const abandon = (reason: string) => {
      log.error("Upgrade failed", { reason });
      this.registry.thaw();
      this.upgrading = false;
      return new CommandError(reason, 500);
    };
    try {
      this.registry.save();
    } catch (error) {
      throw abandon(`cannot save the state before the upgrade, nothing changed: ${(error as Error).message}`);
    }
    let successor: Successor | undefined;
    try {
      const { httpPort, httpsPort, fds } = this.traffic;
      successor = startSuccessor({ httpPort, httpsPort, metricsPort: this.metricsPort, statusPort: this.statusPort, ...fds }, request.readyTimeout);
      log.info("Upgrading", { new_pid: successor.pid });
      progress(`Starting the new parachute (pid ${successor.pid})`);
      const socket = await successor.ready;
      fs.renameSync(socket, this.options.socket);
      writePidFile(this.pidFile, successor.pid);
      return successor;
    } catch (error) {
      successor?.kill();
      throw abandon(`upgrade failed, this parachute (pid ${process.pid}) goes on serving: ${(error as Error).message}`);
    }
  }
}

/** A successor checks its own admin socket answers, then tells its predecessor it is ready. */
async function announceWhenServing(adminPath: string) {
  const res = await fetch("http://parachute/health", { unix: adminPath, signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new StartupError(`own admin socket answered HTTP ${res.status}`);
  await res.body?.cancel();
  announceReady(adminPath);
}
