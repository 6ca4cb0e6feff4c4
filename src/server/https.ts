// The HTTPS listener: every TLS service by SNI, HTTP/2 via ALPN. Bun cannot
// change the certificates of a running server (`reload({tls})` is ignored,
// BUN-NOTES §3.2), so a new certificate set starts a second server on the
// same port with reusePort and the old one stops gracefully: open
// connections finish on the old server, new ones land on the new one.
import type { Server, WebSocketHandler } from "bun";
import { log } from "../log.ts";

export interface HttpsOptions {
  port: number;
  hostname: string | undefined;
  fetch: (req: Request, server: Server<never>) => Response | Promise<Response | undefined> | undefined;
  websocket: WebSocketHandler<never>;
  /** Served to names no service has (and to clients without SNI). */
  fallback: { cert: string; key: string };
}

export class HttpsListener {
  private server: Server<never> | undefined;
  private port: number;

  constructor(private readonly options: HttpsOptions) {
    this.port = options.port;
  }

  get boundPort(): number {
    return this.port;
  }

  private serve(entries: { host: string; cert: string; key: string }[]): Server<never> {
    const { fallback } = this.options;
    return Bun.serve({
      port: this.port,
      hostname: this.options.hostname,
      reusePort: true,
      development: false,
      idleTimeout: 60,
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      // Bun registers SNI names one entry per name (SANs are not read), and
      // the first entry answers unknown names: the fallback goes first.
      tls: [{ cert: fallback.cert, key: fallback.key }, ...entries.map((e) => ({ cert: e.cert, key: e.key, serverName: e.host }))],
      http2: true,
      fetch: this.options.fetch as never,
      websocket: this.options.websocket,
      error: () => new Response("Internal Server Error", { status: 500 }),
    } as never) as Server<never>;
  }

  /**
   * Binds the port (errors surface at start-up, like the HTTP port's). The
   * listeners use reusePort for the certificate swap, which would also let a
   * second process share the port silently: a plain bind first proves that
   * nobody else holds it.
   */
  start() {
    const probe = Bun.serve({ port: this.port, hostname: this.options.hostname, reusePort: false, fetch: () => new Response() });
    this.port = probe.port!;
    probe.stop(true);
    this.server = this.serve([]);
  }

  /** Swaps in a server with the new certificate set without dropping a connection. */
  update(entries: { host: string; cert: string; key: string }[]) {
    const previous = this.server;
    try {
      this.server = this.serve(entries);
    } catch (error) {
      log.error("Cannot reload HTTPS certificates; keeping the previous set", { error: (error as Error).message });
      return;
    }
    log.info("HTTPS certificates loaded", { hosts: entries.map((e) => e.host) });
    void previous?.stop(false);
  }

  get pendingRequests(): number {
    return this.server?.pendingRequests ?? 0;
  }

  async stop(force: boolean) {
    await this.server?.stop(force);
  }
}
