// The HTTPS port. It reads the client's ClientHello itself before any TLS
// server sees it, because no server of this runtime can do what has to happen
// there: refuse a name no service has (an unrecognized_name alert), wait for
// a certificate still being issued, and pick the certificate by SNI from a set
// that changes at run time without touching open connections. Then:
// - a client offering h2 is relayed to the loopback HTTP/2 server (Bun.serve);
// - any other client has its TLS terminated here, in this process, by a
//   node:tls socket with that name's certificate, and is served by the same
//   HTTP/1 connection code as plain HTTP (so a download keeps its length);
// - an ACME TLS-ALPN-01 validation (ALPN `acme-tls/1`, RFC 8737) gets the
//   challenge certificate of its name and `acme-tls/1`, and nothing else:
//   the handshake is the whole answer.
import type { TCPSocketListener } from "bun";
import { Duplex } from "node:stream";
import { TLSSocket, type SecureContext } from "node:tls";
import { parseClientHello } from "../tls/client-hello.ts";
import { listenerFd, listenTcp, type ListenOptions } from "./http1-server.ts";
import { noteActivity } from "./memory.ts";
import { SocketTransport, socketHandlers, TlsTransport, type Transport } from "./transport.ts";

/** A fatal TLS alert record: unrecognized_name (RFC 6066 §3), what a TLS server sends for a name it does not serve. */
const UNRECOGNIZED_NAME_ALERT = new Uint8Array([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x70]);
const MAX_HELLO = 16 * 1024 + 5;
const HELLO_TIMEOUT_MS = 10_000;

export interface TlsFrontOptions extends ListenOptions {
  /**
   * Called with the SNI name before the handshake; may wait for its
   * certificate. False refuses the handshake.
   */
  admit(serverName: string | undefined): Promise<boolean>;
  /** The certificate for a name (the fallback one for unknown names and no SNI). */
  context(serverName: string | undefined): SecureContext;
  /** The TLS-ALPN-01 challenge certificate for a name whose challenge is open. */
  acmeContext(serverName: string): SecureContext | undefined;
  /** The loopback port of the HTTP/2 server that holds the name's certificate. */
  h2Port(serverName: string | undefined): number;
  /** Serves a terminated HTTP/1.x connection. */
  serve(transport: Transport, clientAddress: string): void;
}

export class TlsFront {
  private listener: TCPSocketListener<SocketTransport> | undefined;
  /** Relayed connections' loopback port → the real client address, for the HTTP/2 server. */
  private readonly clients = new Map<number, string>();

  constructor(private readonly options: TlsFrontOptions) {}

  /** The bound port (an inherited socket's listener does not know it: the predecessor said which). */
  get port(): number {
    return this.listener?.port || this.options.port;
  }

  get fd(): number | undefined {
    return listenerFd(this.listener);
  }

  /** The client behind a relayed connection, given the port it came from. */
  clientAddress(relayPort: number): string | undefined {
    return this.clients.get(relayPort);
  }

  start() {
    this.listener = listenTcp(this.options, (transport, clientAddress) => this.readHello(transport, clientAddress));
  }

  stop(force: boolean) {
    this.listener?.stop(force);
  }

  /** Collects the ClientHello, which may come in several pieces. */
  private readHello(transport: SocketTransport, clientAddress: string) {
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    const timer = setTimeout(() => transport.destroy(), HELLO_TIMEOUT_MS);
    transport.events = {
      data: (chunk) => {
        chunks.push(chunk);
        bytes += chunk.byteLength;
        const hello = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        const parsed = parseClientHello(hello);
        if (!parsed.complete && bytes < MAX_HELLO) return;
        clearTimeout(timer);
        transport.pause();
        transport.events = { data: (c) => void chunks.push(c), drain() {}, end() {}, close() {} };
        chunks.length = 0;
        chunks.push(hello);
        const name = parsed.complete ? parsed.serverName : undefined;
        if (parsed.complete && parsed.offersAcmeTls) return this.answerAcme(transport, clientAddress, chunks, name);
        void this.route(transport, clientAddress, chunks, name, parsed.complete && parsed.offersH2 === true);
      },
      drain() {},
      end: () => transport.destroy(),
      close: () => clearTimeout(timer),
    };
  }

  private async route(transport: SocketTransport, clientAddress: string, received: Uint8Array[], serverName: string | undefined, h2: boolean) {
    // A handshake leaves native TLS state behind even when no request follows (a scan, a health probe).
    noteActivity();
    let admitted = true;
    try {
      admitted = await this.options.admit(serverName);
    } catch {
      // served anyway: the handshake gets whatever certificate there is
    }
    if (transport.closed) return;
    if (!admitted) {
      transport.write(UNRECOGNIZED_NAME_ALERT);
      return transport.end();
    }
    if (h2) return this.relay(transport, received, serverName, clientAddress);
    this.terminate(transport, received, serverName, clientAddress);
  }

  /**
   * A TLS-ALPN-01 validation: without an open challenge for the name it is
   * refused as an unknown name, so no service's certificate is ever shown to
   * `acme-tls/1`.
   */
  private answerAcme(raw: SocketTransport, clientAddress: string, received: Uint8Array[], serverName: string | undefined) {
    const context = serverName ? this.options.acmeContext(serverName) : undefined;
    if (context) return this.terminate(raw, received, serverName, clientAddress, context);
    raw.write(UNRECOGNIZED_NAME_ALERT);
    raw.end();
  }

  /**
   * TLS ends here: the raw bytes feed a node:tls socket through a stream the
   * front controls. With an ACME challenge certificate, the handshake
   * (negotiating `acme-tls/1`) is the whole answer and the connection then
   * closes (RFC 8737 §3).
   */
  private terminate(raw: SocketTransport, received: Uint8Array[], serverName: string | undefined, clientAddress: string, acme?: SecureContext) {
    let writeDone: (() => void) | undefined;
    const wire = new Duplex({
      read: () => raw.resume(),
      write: (chunk: Uint8Array, _encoding, callback) => {
        if (raw.write(chunk)) callback();
        else writeDone = callback;
      },
      final: (callback) => {
        raw.end();
        callback();
      },
      destroy: (error, callback) => {
        raw.destroy();
        callback(error);
      },
    });
    raw.events = {
      data: (chunk) => {
        if (!wire.push(chunk)) raw.pause();
      },
      drain: () => {
        const done = writeDone;
        writeDone = undefined;
        done?.();
      },
      end: () => wire.push(null),
      close: () => wire.destroy(),
    };
    for (const chunk of received) wire.push(chunk);
    let tls: TLSSocket;
    try {
      tls = new TLSSocket(wire as never, {
        isServer: true,
        secureContext: acme ?? this.options.context(serverName),
        ALPNProtocols: acme ? ["acme-tls/1"] : ["http/1.1"],
      });
    } catch {
      return raw.destroy();
    }
    raw.resume();
    if (acme) return closeAfterHandshake(tls);
    this.options.serve(new TlsTransport(tls, clientAddress), clientAddress);
  }

  /** HTTP/2: the encrypted bytes go, untouched, to the loopback Bun.serve. */
  private async relay(client: SocketTransport, received: Uint8Array[], serverName: string | undefined, clientAddress: string) {
    let upstream: SocketTransport;
    try {
      const socket = await Bun.connect<SocketTransport>({
        hostname: "127.0.0.1",
        port: this.options.h2Port(serverName),
        socket: {
          ...socketHandlers,
          open(socket) {
            socket.data = new SocketTransport(socket);
            socket.setNoDelay(true);
          },
          connectError() {},
        },
      });
      upstream = socket.data;
    } catch {
      return client.destroy();
    }
    if (client.closed) return upstream.destroy();
    const port = upstream.socket.localPort;
    this.clients.set(port, clientAddress);
    pipe(client, upstream, () => this.clients.delete(port));
    for (const chunk of received) upstream.write(chunk);
    client.resume();
  }
}

/** Ends a TLS-ALPN-01 validation's connection once its handshake is done (or after the hello timeout). */
function closeAfterHandshake(tls: TLSSocket) {
  const timer = setTimeout(() => tls.destroy(), HELLO_TIMEOUT_MS);
  tls.on("secure", () => tls.end());
  tls.on("data", () => {});
  tls.on("error", () => tls.destroy());
  tls.on("close", () => clearTimeout(timer));
}

/** Relays two connections both ways, with backpressure; closing one closes the other. */
function pipe(a: Transport, b: Transport, onClose: () => void) {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    a.end();
    b.end();
    onClose();
  };
  a.events = { data: (c) => void (b.write(c) || a.pause()), drain: () => b.resume(), end: close, close };
  b.events = { data: (c) => void (a.write(c) || b.pause()), drain: () => a.resume(), end: close, close };
}
