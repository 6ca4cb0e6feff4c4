// The HTTPS listener: every TLS service by SNI, HTTP/2 via ALPN. The public
// port is a TCP front (tls-front.ts) that reads the SNI name, waits for a
// certificate still being issued, and relays to a loopback TLS server: node's
// HTTP/2 server (certificate by SNICallback) for clients offering h2, else
// the node:https server of that host's certificate (or of the fallback one).
// Node servers, not Bun.serve, so that a streamed download keeps its
// Content-Length (see node-listener.ts). Bun's node:https server ignores
// SNICallback, hence one HTTP/1.1 server per certificate; a TLS server
// feeding one node:http server served a third fewer requests.
import * as http2 from "node:http2";
import type { IncomingMessage, Server } from "node:http";
import * as https from "node:https";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { log } from "../log.ts";
import { NodeListener, nodeRequestListener, type FetchHandler } from "./node-listener.ts";
import { TlsFront } from "./tls-front.ts";
import type { UpgradeTunnel } from "./upgrade-tunnel.ts";

/** A replaced server keeps running this long: connections relayed just before the swap may still be in their handshake. */
const OLD_SERVER_GRACE_MS = 2_000;

export interface HttpsOptions {
  port: number;
  hostname: string | undefined;
  fetch: FetchHandler;
  /** Where upgrade requests (WebSockets over HTTP/1.1) go. */
  upgrades: UpgradeTunnel;
  /** Served to names no service has (and to clients without SNI). */
  fallback: { cert: string; key: string };
  /** Waits (bounded) for the certificate of a name still being issued. */
  beforeRelay: (serverName: string | undefined) => Promise<boolean>;
}

interface Certificate {
  cert: string;
  key: string;
}

/** One host's certificate and the HTTP/1.1 server presenting it. */
interface HostServer extends Certificate {
  listener: NodeListener;
  context: tls.SecureContext;
}

const INTERNAL_ERROR = () => new Response("Internal Server Error", { status: 500 });

/** The entry for an SNI name: exact, then a wildcard one level up. */
function lookup<T>(map: Map<string, T>, name: string): T | undefined {
  const exact = map.get(name);
  if (exact) return exact;
  const dot = name.indexOf(".");
  return dot > 0 ? map.get(`*${name.slice(dot)}`) : undefined;
}

export class HttpsListener {
  readonly front: TlsFront;
  private readonly http2: NodeListener;
  private readonly fallback: HostServer;
  private hosts = new Map<string, HostServer>();

  constructor(private readonly options: HttpsOptions) {
    this.front = new TlsFront({ port: options.port, hostname: options.hostname, beforeRelay: options.beforeRelay });
    this.fallback = this.hostServer(options.fallback);
    const SNICallback = (name: string, done: (error: Error | null, context?: tls.SecureContext) => void) =>
      done(null, (lookup(this.hosts, name.toLowerCase()) ?? this.fallback).context);
    this.http2 = new NodeListener(this.internal(), nodeRequestListener(options.fetch, "https", INTERNAL_ERROR) as never, (handle) =>
      http2.createSecureServer({ ...options.fallback, SNICallback, allowHTTP1: true }, handle as never) as never,
    );
    this.front.backendPort = (serverName, h2) => {
      if (h2) return this.http2.port;
      const server = serverName ? lookup(this.hosts, serverName) : undefined;
      return server?.listener.port || this.fallback.listener.port;
    };
  }

  private internal() {
    const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const address = this.front.clientAddress(req.socket.remotePort ?? 0) ?? req.socket.remoteAddress ?? "";
      this.options.upgrades.handle(req, socket, head, address);
    };
    return { port: 0, hostname: "127.0.0.1", idleTimeoutMs: 60_000, upgrade };
  }

  /** An HTTP/1.1 server presenting one certificate; throws on a bad certificate or key. */
  private hostServer(certificate: Certificate): HostServer {
    const context = tls.createSecureContext(certificate);
    const listener = new NodeListener(
      this.internal(),
      nodeRequestListener(this.options.fetch, "https", INTERNAL_ERROR),
      (handle) => https.createServer({ cert: certificate.cert, key: certificate.key }, handle) as unknown as Server,
    );
    return { ...certificate, context, listener };
  }

  get boundPort(): number {
    return this.front.port;
  }

  /** Binds the public port (errors surface at start-up, like the HTTP port's). */
  async start() {
    await this.fallback.listener.start();
    await this.http2.start();
    this.front.start();
  }

  /**
   * Takes a new certificate set; the next handshakes use it, open connections
   * keep theirs. Synchronous, so a deploy that returns has its certificate
   * served: Bun binds a loopback port 0 within listen() itself.
   */
  update(entries: { host: string; cert: string; key: string }[]) {
    const next = new Map<string, HostServer>();
    for (const entry of entries) {
      const host = entry.host.toLowerCase();
      const current = this.hosts.get(host);
      if (current && current.cert === entry.cert && current.key === entry.key) {
        next.set(host, current);
        continue;
      }
      try {
        const server = this.hostServer(entry);
        server.listener.start().catch((error: Error) => {
          log.error("Cannot serve the HTTPS certificate; keeping the previous one", { host, error: error.message });
          if (this.hosts.get(host) !== server) return;
          if (current) this.hosts.set(host, current);
          else this.hosts.delete(host);
        });
        next.set(host, server);
      } catch (error) {
        log.error("Cannot load the HTTPS certificate; keeping the previous one", { host, error: (error as Error).message });
        if (current) next.set(host, current);
      }
    }
    const kept = new Set(next.values());
    const replaced = [...this.hosts.values()].filter((server) => !kept.has(server));
    this.hosts = next;
    log.info("HTTPS certificates loaded", { hosts: entries.map((e) => e.host) });
    for (const server of replaced) setTimeout(() => void server.listener.stop(false), OLD_SERVER_GRACE_MS);
  }

  get pendingRequests(): number {
    let pending = this.http2.pendingRequests + this.fallback.listener.pendingRequests;
    for (const server of this.hosts.values()) pending += server.listener.pendingRequests;
    return pending;
  }

  async stop(force: boolean) {
    this.front.stop(force);
    const listeners = [this.http2, this.fallback.listener, ...[...this.hosts.values()].map((s) => s.listener)];
    await Promise.all(listeners.map((listener) => listener.stop(force)));
  }
}
