// The HTTP/1 side of the data plane: the connections it serves, whatever
// listener accepted them (the plain HTTP port, or HTTPS connections the TLS
// front has terminated), their head timeouts, their WebSocket tunnels, and a
// graceful stop that lets every answer in flight finish.
import type { Socket, TCPSocketListener } from "bun";
import { Http1Connection, type ConnectionOwner } from "./http1-connection.ts";
import type { Pipeline } from "./pipeline.ts";
import type { Scheme } from "./request.ts";
import type { ProxyProtocolGate } from "./proxy-protocol-gate.ts";
import { SocketTransport, socketHandlers, type Transport } from "./transport.ts";
import type { WebSocketTunnel } from "./websocket-tunnel.ts";
import { normalizeClientIp } from "../proxy/headers.ts";

export class Http1Server implements ConnectionOwner {
  private readonly connections = new Set<Http1Connection>();
  private readonly tunnels = new Set<WebSocketTunnel>();
  stopping = false;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private emptied: (() => void) | undefined;

  constructor(readonly pipeline: Pipeline) {}

  /** Serves a new connection. */
  accept(transport: Transport, scheme: Scheme, remoteAddr: string) {
    const connection = new Http1Connection(transport, this, scheme, remoteAddr);
    this.connections.add(connection);
    if (this.stopping) connection.shutdown();
    this.sweeper ??= setInterval(() => this.sweep(), 1_000);
  }

  /** Connections past their head timeout are closed (slow or idle clients). */
  private sweep() {
    const now = Date.now();
    for (const connection of this.connections) {
      if (connection.deadline && connection.deadline < now) connection.timeout();
    }
  }

  tunnelOpened(tunnel: WebSocketTunnel) {
    this.tunnels.add(tunnel);
  }

  tunnelClosed(tunnel: WebSocketTunnel) {
    this.tunnels.delete(tunnel);
  }

  closed(connection: Http1Connection) {
    this.connections.delete(connection);
    if (this.connections.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      this.emptied?.();
    }
  }

  /** Every WebSocket gets a close frame (e.g. 1001 at shutdown), so none holds the stop. */
  closeWebSockets(code: number, reason: string) {
    for (const tunnel of this.tunnels) tunnel.close(code, reason);
  }

  /** Graceful: idle connections close now, busy ones after their answer; resolves when none is left. Forced: cuts them. */
  stop(force: boolean): Promise<void> {
    this.stopping = true;
    for (const connection of this.connections) {
      if (force) connection.destroy();
      else connection.shutdown();
    }
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.emptied = resolve));
  }
}

export interface ListenOptions {
  port: number;
  /** undefined: every interface, IPv6 and IPv4. */
  hostname: string | undefined;
  /** A listening socket inherited from the process this one replaces (see server/upgrade.ts), instead of binding. */
  fd?: number;
  /** Connections from trusted senders start with a PROXY protocol header (README "PROXY protocol"). */
  proxyProtocol?: ProxyProtocolGate;
}

/** The file descriptor of a listener, to hand to a successor (Bun has it, though its types do not say so). */
export function listenerFd(listener: TCPSocketListener<unknown> | undefined): number | undefined {
  const fd = (listener as { fd?: unknown } | undefined)?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

/**
 * Opens a TCP port whose connections are handed to `accept` with the
 * client's address: the peer's, or the one a PROXY protocol header gives.
 * Throws the bind error (EADDRINUSE, EACCES…).
 */
export function listenTcp(options: ListenOptions, accept: (transport: SocketTransport, clientAddress: string) => void): TCPSocketListener<SocketTransport> {
  const gate = options.proxyProtocol;
  const socket = {
    ...socketHandlers,
    open(socket: Socket<SocketTransport>) {
      const transport = (socket.data = new SocketTransport(socket));
      const peer = normalizeClientIp(transport.remoteAddress);
      if (gate?.trusts(peer)) gate.read(transport, peer, (clientAddress) => accept(transport, clientAddress));
      else accept(transport, peer);
    },
  };
  // Bun.listen adopts a listening socket given by `fd` (checked with Bun 1.4.5), though its types omit it.
  if (options.fd !== undefined) return Bun.listen<SocketTransport>({ fd: options.fd, allowHalfOpen: true, socket } as never) as TCPSocketListener<SocketTransport>;
  const listen = (hostname: string) =>
    Bun.listen<SocketTransport>({
      port: options.port,
      hostname,
      // A second parachute on the same port must fail instead of sharing it.
      exclusive: true,
      allowHalfOpen: true,
      socket,
    } as never) as TCPSocketListener<SocketTransport>;
  if (options.hostname) return listen(options.hostname);
  // "All interfaces" is dual-stack; hosts without IPv6 get IPv4 only.
  try {
    return listen("::");
  } catch (error) {
    if ((error as { code?: string }).code === "EADDRINUSE") throw error;
    return listen("0.0.0.0");
  }
}

/** The plain HTTP listener: a TCP port served by `server`. */
export function listenHttp(options: ListenOptions, server: Http1Server): TCPSocketListener<SocketTransport> {
  return listenTcp(options, (transport, clientAddress) => server.accept(transport, "http", clientAddress));
}
