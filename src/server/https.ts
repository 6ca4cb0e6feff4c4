// The HTTPS listener: every TLS service by SNI, HTTP/2 via ALPN. The public
// port is a TCP front (tls-front.ts) that reads the SNI name, waits for a
// certificate still being issued, and relays to one of two loopback TLS
// servers: node's HTTP/2 server for clients offering h2, a TLS server feeding
// an HTTP/1.1 server for the rest (node's HTTP/2 server serves HTTP/1.1 at
// half the rate). Both are node servers, not Bun.serve, so a streamed download keeps
// its Content-Length (see node-listener.ts). They pick the certificate per
// connection from the current set, so a new certificate needs no new server.
import * as http2 from "node:http2";
import * as tls from "node:tls";
import { log } from "../log.ts";
import { NodeListener, nodeRequestListener, type FetchHandler } from "./node-listener.ts";
import { TlsFront } from "./tls-front.ts";
import type { UpgradeTunnel } from "./upgrade-tunnel.ts";

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

const INTERNAL_ERROR = () => new Response("Internal Server Error", { status: 500 });

export class HttpsListener {
  readonly front: TlsFront;
  private readonly http1: NodeListener;
  private readonly http2: NodeListener;
  private contexts = new Map<string, tls.SecureContext>();
  private readonly fallback: tls.SecureContext;

  constructor(private readonly options: HttpsOptions) {
    this.front = new TlsFront({ port: options.port, hostname: options.hostname, beforeRelay: options.beforeRelay });
    this.fallback = tls.createSecureContext(options.fallback);
    const { fallback } = options;
    const SNICallback = (name: string, done: (error: Error | null, context?: tls.SecureContext) => void) => done(null, this.contextFor(name));
    const internal = { port: 0, hostname: "127.0.0.1", idleTimeoutMs: 60_000 };
    const upgrade = (req: import("node:http").IncomingMessage, socket: import("node:stream").Duplex, head: Buffer) => {
      const address = this.front.clientAddress(req.socket.remotePort ?? 0) ?? req.socket.remoteAddress ?? "";
      options.upgrades.handle(req, socket, head, address);
    };
    const listener = nodeRequestListener(options.fetch, "https", INTERNAL_ERROR);
    this.http1 = new NodeListener({ ...internal, upgrade }, listener, undefined, { cert: fallback.cert, key: fallback.key, SNICallback });
    this.http2 = new NodeListener({ ...internal, upgrade }, listener as never, (handle) =>
      http2.createSecureServer({ cert: fallback.cert, key: fallback.key, SNICallback, allowHTTP1: true }, handle as never) as never,
    );
  }

  /** The context for an SNI name: exact, then a wildcard one level up, else the fallback. */
  private contextFor(name: string): tls.SecureContext {
    const host = name.toLowerCase();
    const exact = this.contexts.get(host);
    if (exact) return exact;
    const dot = host.indexOf(".");
    return (dot > 0 && this.contexts.get(`*${host.slice(dot)}`)) || this.fallback;
  }

  get boundPort(): number {
    return this.front.port;
  }

  /** Binds the public port (errors surface at start-up, like the HTTP port's). */
  async start() {
    await this.http1.start();
    await this.http2.start();
    this.front.backendPort = this.http1.port;
    this.front.h2BackendPort = this.http2.port;
    this.front.start();
  }

  /** Takes a new certificate set; the next handshakes use it, open connections keep theirs. */
  update(entries: { host: string; cert: string; key: string }[]) {
    const contexts = new Map<string, tls.SecureContext>();
    try {
      for (const entry of entries) contexts.set(entry.host.toLowerCase(), tls.createSecureContext({ cert: entry.cert, key: entry.key }));
    } catch (error) {
      log.error("Cannot reload HTTPS certificates; keeping the previous set", { error: (error as Error).message });
      return;
    }
    this.contexts = contexts;
    log.info("HTTPS certificates loaded", { hosts: entries.map((e) => e.host) });
  }

  get pendingRequests(): number {
    return this.http1.pendingRequests + this.http2.pendingRequests;
  }

  async stop(force: boolean) {
    this.front.stop(force);
    await Promise.all([this.http1.stop(force), this.http2.stop(force)]);
  }
}
