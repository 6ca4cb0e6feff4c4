// The HTTPS listener: every TLS service by SNI, HTTP/2 via ALPN. The public
// port is a TCP front (tls-front.ts) that reads the SNI name and the ALPN
// offer, waits for a certificate still being issued, and relays to a loopback
// TLS server:
// - clients offering h2: a Bun.serve with `http2` and every certificate by
//   SNI. node's HTTP/2 server would keep streamed Content-Length, but in Bun
//   1.4.5 it stalls streams when many large downloads share a connection
//   (measured: 100 × 1 MB with 50 concurrent streams hung), so HTTP/2 keeps
//   Bun.serve and its limitation (oven-sh/bun#10507).
// - everyone else (HTTP/1.1): the node:https server of that host's
//   certificate, so a streamed download keeps its Content-Length (see
//   node-listener.ts). Bun's node:https ignores SNICallback, hence one server
//   per host certificate, plus the fallback one for unknown names.
import type { Server as BunServer, WebSocketHandler } from "bun";
import type { IncomingMessage, Server } from "node:http";
import * as https from "node:https";
import type { Duplex } from "node:stream";
import { log } from "../log.ts";
import { NodeListener, nodeRequestListener, type FetchHandler } from "./node-listener.ts";
import { TlsFront } from "./tls-front.ts";
import { LOOPBACK_SERVE, type UpgradeTunnel } from "./upgrade-tunnel.ts";

/** A replaced server keeps running this long: connections relayed just before the swap may still be in their handshake. */
const OLD_SERVER_GRACE_MS = 2_000;

type Entry = { host: string; cert: string; key: string };

export interface HttpsOptions {
  port: number;
  hostname: string | undefined;
  /** The proxy for HTTP/1.1 clients (node:https). */
  fetch: FetchHandler;
  /** Where their upgrade requests (WebSockets) go. */
  upgrades: UpgradeTunnel;
  /** The proxy and WebSocket relay for HTTP/2 clients (Bun.serve). */
  h2Fetch: (req: Request, server: BunServer<never>) => Response | Promise<Response | undefined> | undefined;
  websocket: WebSocketHandler<never>;
  /** Served to names no service has (and to clients without SNI). */
  fallback: { cert: string; key: string };
  /** Waits (bounded) for the certificate of a name still being issued. */
  beforeRelay: (serverName: string | undefined) => Promise<boolean>;
}

/** One host's certificate and the HTTP/1.1 server presenting it. */
interface HostServer {
  cert: string;
  key: string;
  listener: NodeListener;
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
  private readonly fallback: HostServer;
  private hosts = new Map<string, HostServer>();
  private h2: BunServer<never> | undefined;
  /** The certificate set the HTTP/2 server holds; an unchanged set keeps it (and its connections). */
  private h2Certificates = "[]";

  constructor(private readonly options: HttpsOptions) {
    this.front = new TlsFront({ port: options.port, hostname: options.hostname, beforeRelay: options.beforeRelay });
    this.fallback = this.hostServer(options.fallback);
    this.front.backendPort = (serverName, h2) => {
      if (h2 && this.h2) return this.h2.port!;
      const server = serverName ? lookup(this.hosts, serverName) : undefined;
      return server?.listener.port || this.fallback.listener.port;
    };
  }

  /** An HTTP/1.1 server presenting one certificate; throws on a bad certificate or key. */
  private hostServer(certificate: { cert: string; key: string }): HostServer {
    const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const address = this.front.clientAddress(req.socket.remotePort ?? 0) ?? req.socket.remoteAddress ?? "";
      this.options.upgrades.handle(req, socket, head, address);
    };
    const server = https.createServer({ cert: certificate.cert, key: certificate.key });
    const listener = new NodeListener(
      { port: 0, hostname: "127.0.0.1", idleTimeoutMs: 60_000, upgrade },
      nodeRequestListener(this.options.fetch, "https", INTERNAL_ERROR),
      (handle) => server.on("request", handle) as unknown as Server,
    );
    return { cert: certificate.cert, key: certificate.key, listener };
  }

  /** The HTTP/2 server for a certificate set; Bun cannot change a running server's certificates. */
  private serveH2(entries: Entry[]): BunServer<never> {
    const { fallback } = this.options;
    return Bun.serve({
      ...LOOPBACK_SERVE,
      // Bun registers SNI names one entry per name (SANs are not read), and
      // the first entry answers unknown names: the fallback goes first.
      tls: [{ cert: fallback.cert, key: fallback.key }, ...entries.map((e) => ({ cert: e.cert, key: e.key, serverName: e.host }))],
      http2: true,
      fetch: this.options.h2Fetch as never,
      websocket: this.options.websocket,
    } as never) as BunServer<never>;
  }

  get boundPort(): number {
    return this.front.port;
  }

  /** Binds the public port (errors surface at start-up, like the HTTP port's). */
  async start() {
    await this.fallback.listener.start();
    this.h2 = this.serveH2([]);
    this.front.start();
  }

  /**
   * Takes a new certificate set; the next handshakes use it, open connections
   * keep theirs. Synchronous, so a deploy that returns has its certificate
   * served: Bun binds a loopback port 0 within listen() itself.
   */
  update(entries: Entry[]) {
    const next = new Map<string, HostServer>();
    const valid: Entry[] = [];
    for (const entry of entries) {
      const host = entry.host.toLowerCase();
      const current = this.hosts.get(host);
      if (current && current.cert === entry.cert && current.key === entry.key) {
        next.set(host, current);
        valid.push(entry);
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
        valid.push(entry);
      } catch (error) {
        log.error("Cannot load the HTTPS certificate; keeping the previous one", { host, error: (error as Error).message });
        if (current) {
          next.set(host, current);
          valid.push({ host: entry.host, cert: current.cert, key: current.key });
        }
      }
    }
    const kept = new Set(next.values());
    const replaced = [...this.hosts.values()].filter((server) => !kept.has(server));
    this.hosts = next;
    for (const server of replaced) setTimeout(() => void server.listener.stop(false), OLD_SERVER_GRACE_MS);

    const previousH2 = this.h2;
    const certificates = JSON.stringify(valid.map((e) => [e.host, e.cert, e.key]).sort());
    if (certificates !== this.h2Certificates) {
      try {
        this.h2 = this.serveH2(valid);
        this.h2Certificates = certificates;
      } catch (error) {
        log.error("Cannot reload HTTPS certificates for HTTP/2; keeping the previous set", { error: (error as Error).message });
      }
    }
    // A graceful stop counts connections still in their handshake as idle: a moment first.
    if (previousH2 && previousH2 !== this.h2) setTimeout(() => void previousH2.stop(false), OLD_SERVER_GRACE_MS);
    log.info("HTTPS certificates loaded", { hosts: entries.map((e) => e.host) });
  }

  get pendingRequests(): number {
    let pending = (this.h2?.pendingRequests ?? 0) + this.fallback.listener.pendingRequests;
    for (const server of this.hosts.values()) pending += server.listener.pendingRequests;
    return pending;
  }

  async stop(force: boolean) {
    this.front.stop(force);
    const listeners = [this.fallback.listener, ...[...this.hosts.values()].map((s) => s.listener)];
    await Promise.all([this.h2?.stop(force), ...listeners.map((listener) => listener.stop(force))]);
  }
}
