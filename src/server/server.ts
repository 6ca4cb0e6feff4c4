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
import { HttpsListener } from "./https.ts";
import { createProxyApp } from "./proxy-app.ts";
import { closeWebSockets, isWebSocketUpgrade, upgradeWebSocket, websocketHandler } from "./websocket.ts";
import { NodeListener, nodeRequestListener } from "./node-listener.ts";
import { UpgradeTunnel } from "./upgrade-tunnel.ts";
import { normalizeClientIp } from "../proxy/headers.ts";

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

  // Upgrade requests go through a loopback Bun.serve running the WebSocket
  // relay (see upgrade-tunnel.ts); it learns each client's address from the
  // port its tunnel comes from.
  const upgradeTunnel = (scheme: "http" | "https") => {
    const tunnelProxy = createProxyApp(registry, scheme, tlsContext, (port) => tunnel.peerAddress(port));
    const tunnel: UpgradeTunnel = new UpgradeTunnel(
      (req, server, peerAddress) =>
        isWebSocketUpgrade(req) ? upgradeWebSocket(req, server as never, registry, scheme, peerAddress) : tunnelProxy.fetch(req, server),
      websocketHandler as never,
    );
    tunnel.start();
    return tunnel;
  };

  // HTTPS first: its port must be known for redirects before traffic flows.
  let httpsListener: HttpsListener | undefined;
  let httpsUpgrades: UpgradeTunnel | undefined;
  const tlsContext = { certificates, httpsPort: 0 };
  if (options.httpsPort > 0) {
    const peerAddress = (port: number) => httpsListener?.front.clientAddress(port);
    const httpsProxy = createProxyApp(registry, "https", tlsContext, peerAddress);
    httpsUpgrades = upgradeTunnel("https");
    httpsListener = new HttpsListener({
      port: options.httpsPort,
      hostname: options.bind,
      fallback: await fallbackCertificate(),
      fetch: (req, server) => httpsProxy.fetch(req, server),
      upgrades: httpsUpgrades,
      // Only clients offering h2 reach that server, and it picks h2 for them.
      h2Fetch: (req, server) =>
        isWebSocketUpgrade(req)
          ? upgradeWebSocket(req, server as never, registry, "https", peerAddress)
          : httpsProxy.fetch(req, { requestIP: (r) => server.requestIP(r), timeout: (r, s) => server.timeout(r, s), httpVersion: () => "HTTP/2.0" }),
      websocket: websocketHandler as never,
      // A name no service answers for fails the handshake (SPEC §8); a client
      // without SNI gets the fallback certificate. A first connection for a
      // host whose certificate is being issued waits for it.
      beforeRelay: async (serverName) => {
        // An IP address is not a valid SNI name (RFC 6066 §3), but some
        // clients (wrk) send one: treated as no name, the fallback certificate.
        if (!serverName || isIP(serverName)) return true;
        if (!registry.router.servesHost(serverName)) return false;
        if (!certificates.has(serverName)) await certificates.waitFor(serverName, CERTIFICATE_WAIT_MS);
        return true;
      },
    });
    try {
      await httpsListener.start();
    } catch (error) {
      void httpsUpgrades.stop(true);
      throw listenError("HTTPS", options.httpsPort, error);
    }
    tlsContext.httpsPort = httpsListener.boundPort;
    certificates.onChange = () => httpsListener!.update(certificates.entries());
  }
  registry.restore();
  certificates.start();

  const proxy = createProxyApp(registry, "http", tlsContext);
  const upgrades = upgradeTunnel("http");
  // node:http rather than Bun.serve: it keeps the Content-Length of streamed
  // downloads (see node-listener.ts).
  const http = new NodeListener(
    {
      port: options.httpPort,
      hostname: options.bind,
      idleTimeoutMs: 60_000,
      upgrade: (req, socket, head) => upgrades.handle(req, socket, head, normalizeClientIp(req.socket.remoteAddress)),
    },
    nodeRequestListener((req, server) => proxy.fetch(req, server), "http", () => new Response("Internal Server Error", { status: 500 })),
  );
  try {
    await http.start();
  } catch (error) {
    void upgrades.stop(true);
    void httpsListener?.stop(true);
    void httpsUpgrades?.stop(true);
    throw listenError("HTTP", options.httpPort, error);
  }

  const stopListeners = (force: boolean) =>
    Promise.all([http.stop(force), upgrades.stop(force), httpsListener?.stop(force), httpsUpgrades?.stop(force)]);

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
    https_port: httpsListener?.boundPort ?? 0,
    metrics_port: metricsServer?.port ?? 0,
    socket: options.socket,
    state_dir: options.stateDir,
    pid: process.pid,
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("Shutting down", { signal, in_flight: http.pendingRequests + upgrades.pendingRequests + (httpsListener?.pendingRequests ?? 0) });
    adminServer.stop(true);
    metricsServer?.stop(true);
    certificates.stop();
    // WebSockets would hold a graceful stop open until the grace period ends.
    closeWebSockets();
    const graceful = stopListeners(false).then(() => "done" as const);
    const outcome = await Promise.race([graceful, Bun.sleep(SHUTDOWN_GRACE_MS).then(() => "timeout" as const)]);
    if (outcome === "timeout") await stopListeners(true);
    registry.dispose();
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
