// One byte-stream interface over the two kinds of connection the HTTP/1
// listener serves: Bun's own TCP sockets (plain HTTP, and the connections to
// targets) and node:tls sockets (HTTPS, terminated in-process after the TLS
// front has read the ClientHello; see tls-front.ts).
import type { Socket } from "bun";
import type { TLSSocket } from "node:tls";
import { writesBlocked, writesUnblocked } from "./stalls.ts";

export interface TransportEvents {
  data(chunk: Uint8Array): void;
  /** Everything written so far has been handed to the kernel. */
  drain(): void;
  /** The peer has finished sending (TCP FIN); writing may go on. */
  end(): void;
  /** The connection is gone (either side, or destroyed); called once. */
  close(): void;
}

export interface Transport {
  events: TransportEvents;
  /** Writes or queues `data`; `false` when it had to queue (wait for `drain`). */
  write(data: Uint8Array): boolean;
  /** Closes after what is queued has been sent. */
  end(): void;
  /** Sends what is queued, then a FIN, and goes on reading (a lingering close). */
  shutdown(): void;
  /** Closes now, discarding what is queued. */
  destroy(): void;
  pause(): void;
  resume(): void;
  readonly closed: boolean;
  /** Bytes waiting in this process to be written. */
  readonly queued: number;
  readonly remoteAddress: string;
}

const NO_EVENTS: TransportEvents = { data() {}, drain() {}, end() {}, close() {} };

/**
 * A Bun socket. Bun's `write` sends what the kernel takes now and returns the
 * count; the rest is kept here and sent on `drain`, in order.
 */
export class SocketTransport implements Transport {
  events: TransportEvents = NO_EVENTS;
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  /** After the queue is flushed: close, or only stop writing. */
  private ending: "close" | "write" | undefined;
  private paused = false;
  closed = false;
  readonly remoteAddress: string;

  constructor(readonly socket: Socket<SocketTransport>) {
    this.remoteAddress = socket.remoteAddress;
  }

  get queued(): number {
    return this.queuedBytes;
  }

  write(data: Uint8Array): boolean {
    if (this.closed) return false;
    if (this.queue.length) {
      this.queue.push(data);
      this.queuedBytes += data.byteLength;
      return false;
    }
    const written = this.socket.write(data);
    if (written === data.byteLength) return true;
    const rest = data.subarray(Math.max(written, 0));
    this.queue.push(rest);
    this.queuedBytes += rest.byteLength;
    writesBlocked(this);
    return false;
  }

  /** Called by the socket handler on Bun's `drain`. */
  flush() {
    while (this.queue.length) {
      const chunk = this.queue[0]!;
      const written = this.socket.write(chunk);
      if (written < chunk.byteLength) {
        const rest = chunk.subarray(Math.max(written, 0));
        this.queuedBytes -= chunk.byteLength - rest.byteLength;
        this.queue[0] = rest;
        // Some progress: a slow reader is not a stalled one.
        if (written > 0) {
          writesUnblocked(this);
          writesBlocked(this);
        }
        return;
      }
      this.queue.shift();
      this.queuedBytes -= chunk.byteLength;
    }
    writesUnblocked(this);
    if (this.ending === "close") this.socket.end();
    else if (this.ending === "write") this.socket.shutdown();
    else this.events.drain();
  }

  end() {
    if (this.closed) return;
    this.ending = "close";
    if (!this.queue.length) this.socket.end();
  }

  shutdown() {
    if (this.closed) return;
    this.ending = "write";
    if (!this.queue.length) this.socket.shutdown();
  }

  destroy() {
    if (this.closed) return;
    this.socket.terminate();
    this.onClose();
  }

  pause() {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }

  /** Called by the socket handler on Bun's `close`, `end` and `error`. */
  onClose() {
    if (this.closed) return;
    this.closed = true;
    writesUnblocked(this);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.events.close();
  }
}

/** Bun socket handlers that forward to the SocketTransport kept in `socket.data`. */
export const socketHandlers = {
  data(socket: Socket<SocketTransport>, chunk: Uint8Array) {
    socket.data.events.data(chunk);
  },
  drain(socket: Socket<SocketTransport>) {
    socket.data.flush();
  },
  close(socket: Socket<SocketTransport>) {
    socket.data?.onClose();
  },
  // Sockets are half-open (allowHalfOpen): a client may finish sending and
  // still wait for its answer.
  end(socket: Socket<SocketTransport>) {
    socket.data?.events.end();
  },
  error(socket: Socket<SocketTransport>) {
    socket.data?.onClose();
  },
};

/** A node:tls socket (HTTPS after the TLS front). It queues writes itself. */
export class TlsTransport implements Transport {
  events: TransportEvents = NO_EVENTS;
  closed = false;

  constructor(
    private readonly tls: TLSSocket,
    readonly remoteAddress: string,
  ) {
    tls.on("data", (chunk: Buffer) => this.events.data(chunk));
    tls.on("drain", () => {
      this.blocked = false;
      writesUnblocked(this);
      this.events.drain();
    });
    const close = () => {
      if (this.closed) return;
      this.closed = true;
      writesUnblocked(this);
      this.events.close();
    };
    tls.on("close", close);
    tls.on("end", () => this.events.end());
    tls.on("error", () => {
      tls.destroy();
      close();
    });
  }

  /** Writes past the stream's high-water mark wait for `drain`; only then is anything counted as queued. */
  private blocked = false;

  get queued(): number {
    return this.blocked ? this.tls.writableLength : 0;
  }

  write(data: Uint8Array): boolean {
    if (this.closed || this.tls.destroyed) return false;
    if (this.tls.write(data)) return true;
    this.blocked = true;
    writesBlocked(this);
    return false;
  }

  end() {
    if (!this.closed) this.tls.end();
  }

  // node:tls goes on reading after end() until the peer closes.
  shutdown() {
    this.end();
  }

  destroy() {
    this.tls.destroy();
  }

  private paused = false;

  pause() {
    if (this.paused) return;
    this.paused = true;
    this.tls.pause();
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    this.tls.resume();
  }
}
