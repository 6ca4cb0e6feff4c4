// The TCP front of the HTTPS port. No server of this runtime can wait for a
// certificate during a handshake, and Bun's node:https server cannot pick one
// by SNI, so the public HTTPS port is a plain TCP listener that reads the client's
// SNI name from its ClientHello, waits (bounded) when that name's certificate
// is still being issued, and then relays the connection, TLS bytes untouched,
// to an internal TLS server on loopback chosen by that name and by whether
// the client's ALPN offers h2 (see https.ts).
import type { Socket, TCPSocketListener } from "bun";

export type ClientHello = { complete: false } | { complete: true; serverName?: string; offersH2?: boolean };

/** Reads the SNI host name and whether ALPN offers h2 from a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1). */
export function parseClientHello(data: Uint8Array): ClientHello {
  if (data.length < 5) return { complete: false };
  if (data[0] !== 0x16) return { complete: true }; // not a TLS handshake: let the TLS server refuse it
  const recordLength = (data[3]! << 8) | data[4]!;
  if (data.length < 5 + recordLength) return { complete: false };
  const hello = data.subarray(5, 5 + recordLength);
  const u16 = (i: number) => (hello[i]! << 8) | hello[i + 1]!;
  try {
    if (hello[0] !== 0x01) return { complete: true };
    let i = 4 + 2 + 32; // handshake header, client_version, random
    i += 1 + hello[i]!; // session id
    i += 2 + u16(i); // cipher suites
    i += 1 + hello[i]!; // compression methods
    const end = Math.min(i + 2 + u16(i), hello.length);
    i += 2;
    let serverName: string | undefined;
    let offersH2 = false;
    while (i + 4 <= end) {
      const type = u16(i);
      const length = u16(i + 2);
      i += 4;
      if (type === 0 && i + 5 <= end) {
        const nameLength = u16(i + 3);
        if (hello[i + 2] === 0 && i + 5 + nameLength <= end) {
          serverName = new TextDecoder().decode(hello.subarray(i + 5, i + 5 + nameLength)).toLowerCase();
        }
      } else if (type === 16 && i + 2 <= end) {
        // ALPN: a list of length-prefixed protocol names.
        const listEnd = Math.min(i + 2 + u16(i), end);
        for (let p = i + 2; p < listEnd; p += 1 + hello[p]!) {
          const n = hello[p]!;
          if (n === 2 && hello[p + 1] === 0x68 && hello[p + 2] === 0x32) offersH2 = true; // "h2"
        }
      }
      i += length;
    }
    return { complete: true, serverName, offersH2 };
  } catch {
    // A malformed hello: the TLS server will refuse it.
  }
  return { complete: true };
}

/** The client side also holds its ClientHello and what it sent while the relay was connecting. */
type ClientData = Pipe & { hello: Uint8Array[] | undefined; helloBytes: number; early: Uint8Array[]; timer?: ReturnType<typeof setTimeout> };

interface Pipe {
  /** Bytes waiting for the other side (before it is connected, or while it is full). */
  queue: Uint8Array[];
  peer: Socket<Pipe> | undefined;
  closed: boolean;
}

/** A fatal TLS alert record: unrecognized_name (RFC 6066 §3), what a TLS server sends for a name it does not serve. */
const UNRECOGNIZED_NAME_ALERT = new Uint8Array([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x70]);

const MAX_HELLO = 16 * 1024 + 5;
const HELLO_TIMEOUT_MS = 10_000;

function concat(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** Writes what it can; queues the rest and pauses the source until `drain`. */
function send(to: Socket<Pipe>, from: Socket<Pipe>, chunk: Uint8Array) {
  if (to.data.queue.length) {
    to.data.queue.push(chunk);
    return;
  }
  const written = to.write(chunk);
  if (written < chunk.byteLength) {
    to.data.queue.push(chunk.subarray(Math.max(written, 0)));
    from.pause();
  }
}

function flush(socket: Socket<Pipe>) {
  const queue = socket.data.queue;
  while (queue.length) {
    const chunk = queue[0]!;
    const written = socket.write(chunk);
    if (written < chunk.byteLength) {
      queue[0] = chunk.subarray(Math.max(written, 0));
      return;
    }
    queue.shift();
  }
  socket.data.peer?.resume();
}

function closeBoth(socket: Socket<Pipe>) {
  socket.data.closed = true;
  const peer = socket.data.peer;
  if (peer && !peer.data.closed) {
    peer.data.closed = true;
    peer.end();
  }
}

export interface TlsFrontOptions {
  port: number;
  hostname: string | undefined;
  /**
   * Called with the SNI name before relaying; may wait for its certificate.
   * False refuses the handshake (an unrecognized_name alert, then close).
   */
  beforeRelay: (serverName: string | undefined) => Promise<boolean>;
}

export class TlsFront {
  private listener: TCPSocketListener<ClientData> | undefined;
  /** The port of the internal TLS server for a connection, given its SNI name and whether its ALPN offers h2. */
  backendPort: (serverName: string | undefined, h2: boolean) => number = () => 0;
  /** Internal connection's local port → the real client address, for X-Forwarded-For and logs. */
  private readonly clients = new Map<number, string>();

  constructor(private readonly options: TlsFrontOptions) {}

  get port(): number {
    return this.listener?.port ?? 0;
  }

  /** The client address behind an internal connection, given the port it came from. */
  clientAddress(internalPort: number): string | undefined {
    return this.clients.get(internalPort);
  }

  start() {
    const relay = async (client: Socket<ClientData>, hello: Uint8Array, serverName: string | undefined, h2: boolean) => {
      client.pause();
      let accepted = true;
      try {
        accepted = await this.options.beforeRelay(serverName);
      } catch {
        // relay anyway: the TLS server answers with whatever it has
      }
      if (client.data.closed) return;
      if (!accepted) {
        client.data.closed = true;
        client.end(UNRECOGNIZED_NAME_ALERT);
        return;
      }
      const clientAddress = client.remoteAddress.startsWith("::ffff:") ? client.remoteAddress.slice(7) : client.remoteAddress;
      let localPort = 0;
      try {
        await Bun.connect<Pipe>({
          hostname: "127.0.0.1",
          port: this.backendPort(serverName, h2),
          data: { queue: [], peer: client as unknown as Socket<Pipe>, closed: false },
          socket: {
            open: (upstream) => {
              localPort = upstream.localPort;
              this.clients.set(localPort, clientAddress);
              client.data.peer = upstream;
              const source = client as unknown as Socket<Pipe>;
              send(upstream, source, hello);
              for (const chunk of client.data.early) send(upstream, source, chunk);
              client.data.early = [];
              if (!upstream.data.queue.length) client.resume();
            },
            data: (upstream, chunk) => send(client as unknown as Socket<Pipe>, upstream, chunk),
            drain: (upstream) => flush(upstream),
            close: (upstream) => {
              this.clients.delete(localPort);
              closeBoth(upstream);
            },
            end: (upstream) => closeBoth(upstream),
            error: (upstream) => closeBoth(upstream),
            connectError: () => void client.end(),
          },
        });
      } catch {
        client.end();
      }
    };

    const listen = (hostname: string) => Bun.listen<ClientData>({
      port: this.options.port,
      hostname,
      data: undefined as unknown as ClientData,
      socket: {
        open: (client) => {
          client.data = { queue: [], peer: undefined, closed: false, hello: [], helloBytes: 0, early: [] };
          client.data.timer = setTimeout(() => client.data.peer || client.end(), HELLO_TIMEOUT_MS);
        },
        data: (client, chunk) => {
          const state = client.data;
          if (state.peer) return send(state.peer, client as unknown as Socket<Pipe>, chunk);
          if (state.hello === undefined) return void state.early.push(new Uint8Array(chunk)); // still connecting
          state.hello.push(new Uint8Array(chunk));
          state.helloBytes += chunk.byteLength;
          const bytes = concat(state.hello);
          const parsed = parseClientHello(bytes);
          if (!parsed.complete && state.helloBytes < MAX_HELLO) return;
          clearTimeout(state.timer);
          state.hello = undefined;
          void relay(client, bytes, parsed.complete ? parsed.serverName : undefined, parsed.complete && parsed.offersH2 === true);
        },
        drain: (client) => flush(client as unknown as Socket<Pipe>),
        close: (client) => {
          clearTimeout(client.data.timer);
          closeBoth(client as unknown as Socket<Pipe>);
        },
        end: (client) => closeBoth(client as unknown as Socket<Pipe>),
        error: (client) => closeBoth(client as unknown as Socket<Pipe>),
      },
    });
    // "All interfaces" means dual-stack like Bun.serve's default; hosts
    // without IPv6 get IPv4 only.
    if (this.options.hostname) this.listener = listen(this.options.hostname);
    else {
      try {
        this.listener = listen("::");
      } catch (error) {
        if ((error as { code?: string }).code === "EADDRINUSE") throw error;
        this.listener = listen("0.0.0.0");
      }
    }
  }

  /** Stops accepting; relayed connections go on unless `force`. */
  stop(force = false) {
    this.listener?.stop(force);
  }
}
