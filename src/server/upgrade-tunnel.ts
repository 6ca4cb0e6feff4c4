// Upgrade requests (WebSockets) and CONNECT on a node:http listener. The WebSocket relay
// (websocket.ts) is built on Bun.serve's server WebSockets, which node:http
// cannot hand a socket to; so the listener's `upgrade` event tunnels the raw
// connection, request head included, to a loopback Bun.serve running the relay.
// That server sees the tunnel's loopback port; the real client address is
// looked up by that port, as for connections relayed by the TLS front.
import type { Server, WebSocketHandler } from "bun";
import type { IncomingMessage } from "node:http";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import { log } from "../log.ts";
import type { PeerAddress } from "../proxy/request-log.ts";

type Fetch = (req: Request, server: Server<never>, peerAddress: PeerAddress) => Response | Promise<Response | undefined> | undefined;

/**
 * Bun.serve options of the loopback servers behind the public listeners (this
 * relay, the HTTP/2 server): any free port, no stack traces, keep-alive idle
 * 60 s, uploads of any size (the default would 413 at 128 MiB).
 */
export const LOOPBACK_SERVE = {
  port: 0,
  hostname: "127.0.0.1",
  reusePort: false,
  development: false,
  idleTimeout: 60,
  maxRequestBodySize: Number.MAX_SAFE_INTEGER,
  error: () => new Response("Internal Server Error", { status: 500 }),
};

/** The request head as it arrived (node has parsed it; the relay parses it again). */
function requestHead(req: IncomingMessage): string {
  let head = `${req.method} ${req.url} HTTP/${req.httpVersion === "1.0" ? "1.0" : "1.1"}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return head + "\r\n";
}

export class UpgradeTunnel {
  private server: Server<never> | undefined;
  /** Tunnel's local port → the client's address. */
  private readonly clients = new Map<number, string>();
  readonly peerAddress: PeerAddress = (port) => this.clients.get(port);

  constructor(
    private readonly fetch: Fetch,
    private readonly websocket: WebSocketHandler<never>,
  ) {}

  start() {
    this.server = Bun.serve({
      ...LOOPBACK_SERVE,
      fetch: (req: Request, server: Server<never>) => this.fetch(req, server, this.peerAddress),
      websocket: this.websocket,
    } as never) as Server<never>;
  }

  /** Relays an upgrade request and everything after it to the loopback relay. */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer, clientAddress: string) {
    const server = this.server;
    if (!server) {
      socket.destroy();
      return;
    }
    const upstream = net.connect({ port: server.port!, host: "127.0.0.1", noDelay: true });
    let port = 0;
    upstream.once("connect", () => {
      port = upstream.localPort ?? 0;
      this.clients.set(port, clientAddress);
      upstream.write(requestHead(req));
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    const close = () => {
      if (port) this.clients.delete(port);
      upstream.destroy();
      socket.destroy();
    };
    upstream.once("close", close);
    socket.once("close", close);
    upstream.on("error", (error) => {
      log.debug("Upgrade tunnel error", { error: error.message });
    });
    socket.on("error", () => {});
  }

  get pendingRequests(): number {
    return this.server?.pendingRequests ?? 0;
  }

  async stop(force: boolean) {
    await this.server?.stop(force);
  }
}
