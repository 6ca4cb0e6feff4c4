// The HTTPS listener: every TLS service by SNI, HTTP/2 via ALPN. Bun cannot
// change the certificates of a running server (`reload({tls})` is ignored,
// BUN-NOTES §3.2), so the TLS server runs on loopback behind a TCP front
// (tls-front.ts) that owns the public port. A new certificate set starts a
// new internal server; the front sends new connections to it, and the old
// one stops gracefully once its own connections are done.
import type { Server, WebSocketHandler } from "bun";
import { log } from "../log.ts";
import { TlsFront } from "./tls-front.ts";

const OLD_SERVER_GRACE_MS = 2_000;

export interface HttpsOptions {
  port: number;
  hostname: string | undefined;
  fetch: (req: Request, server: Server<never>) => Response | Promise<Response | undefined> | undefined;
  websocket: WebSocketHandler<never>;
  /** Served to names no service has (and to clients without SNI). */
  fallback: { cert: string; key: string };
  /** Waits (bounded) for the certificate of a name still being issued. */
  beforeRelay: (serverName: string | undefined) => Promise<boolean>;
}

export class HttpsListener {
  private server: Server<never> | undefined;
  readonly front: TlsFront;

  constructor(private readonly options: HttpsOptions) {
    this.front = new TlsFront({ port: options.port, hostname: options.hostname, beforeRelay: options.beforeRelay });
  }

  get boundPort(): number {
    return this.front.port;
  }

  private serve(entries: { host: string; cert: string; key: string }[]): Server<never> {
    const { fallback } = this.options;
    return Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      reusePort: false,
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

  /** Binds the public port (errors surface at start-up, like the HTTP port's). */
  start() {
    this.server = this.serve([]);
    this.front.backendPort = this.server.port!;
    this.front.start();
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
    this.front.backendPort = this.server.port!;
    log.info("HTTPS certificates loaded", { hosts: entries.map((e) => e.host) });
    // Connections the front relayed just before the swap may still be in
    // their handshake; a graceful stop would count them as idle and close
    // them, so the old server gets a moment before it stops.
    if (previous) setTimeout(() => void previous.stop(false), OLD_SERVER_GRACE_MS);
  }

  get pendingRequests(): number {
    return this.server?.pendingRequests ?? 0;
  }

  async stop(force: boolean) {
    this.front.stop(force);
    await this.server?.stop(force);
  }
}
