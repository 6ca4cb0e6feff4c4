// A WebSocket, once the target has answered 101, is a byte tunnel between the
// client's connection and the target's: frames pass untouched (extensions,
// subprotocols and close codes are the two ends' business), with backpressure
// both ways. The proxy reads only the frame headers, so that it can end a
// tunnel cleanly itself at a frame boundary: 1001 (Going Away) to both ends
// when the target drains or the server shuts down (RFC 6455 §5.5.1, §7.4.1).
import type { Transport } from "./transport.ts";

/** Follows frame boundaries in one direction of a WebSocket byte stream (RFC 6455 §5.2). */
export class FrameTracker {
  private header = new Uint8Array(14);
  private headerBytes = 0;
  private payloadLeft = 0;
  /** A close frame has passed in this direction. */
  sawClose = false;

  /** Between two frames (nothing of a frame read yet). */
  get atBoundary(): boolean {
    return this.headerBytes === 0 && this.payloadLeft === 0;
  }

  /**
   * Reads through `chunk` and returns how many bytes it used: all of them, or
   * with `untilBoundary`, only up to the end of the frame in progress (0 when
   * `chunk` starts a new frame).
   */
  advance(chunk: Uint8Array, untilBoundary = false): number {
    let i = 0;
    while (i < chunk.length) {
      if (untilBoundary && this.atBoundary) return i;
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - i);
        this.payloadLeft -= take;
        i += take;
        continue;
      }
      this.header[this.headerBytes++] = chunk[i++]!;
      const needed = this.headerLength();
      if (this.headerBytes < needed) continue;
      this.payloadLeft = this.payloadLength();
      if ((this.header[0]! & 0x0f) === 0x8) this.sawClose = true;
      this.headerBytes = 0;
    }
    return i;
  }

  private headerLength(): number {
    if (this.headerBytes < 2) return 2;
    const masked = (this.header[1]! & 0x80) !== 0 ? 4 : 0;
    const len = this.header[1]! & 0x7f;
    return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + masked;
  }

  private payloadLength(): number {
    const len = this.header[1]! & 0x7f;
    if (len < 126) return len;
    if (len === 126) return (this.header[2]! << 8) | this.header[3]!;
    let n = 0;
    for (let b = 2; b < 10; b++) n = n * 256 + this.header[b]!;
    return n;
  }
}

/** A close frame (opcode 8) with a code and reason; masked when it goes to a server (RFC 6455 §5.3). */
export function closeFrame(code: number, reason: string, masked: boolean): Uint8Array {
  const text = new TextEncoder().encode(reason).subarray(0, 123);
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  const frame = new Uint8Array(2 + (masked ? 4 : 0) + payload.length);
  frame[0] = 0x88;
  frame[1] = (masked ? 0x80 : 0) | payload.length;
  if (!masked) {
    frame.set(payload, 2);
    return frame;
  }
  const mask = crypto.getRandomValues(new Uint8Array(4));
  frame.set(mask, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** After the proxy's own close frames, how long the two ends get to answer before the sockets are cut. */
const CLOSE_GRACE_MS = 2_000;

/** One direction of the tunnel: bytes from `from` to `to`, framed by `tracker`. */
interface Direction {
  from: Transport;
  to: Transport;
  tracker: FrameTracker;
  /** Once the proxy closes the tunnel: the close frame for `to`, sent at the next frame boundary. */
  closing: Uint8Array | undefined;
  /** The proxy's close frame has gone to `to`; nothing more is relayed this way. */
  done: boolean;
}

export class WebSocketTunnel {
  private readonly up: Direction;
  private readonly down: Direction;
  private ending = false;
  private finished = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: Transport,
    private readonly upstream: Transport,
    /** Called once both sockets are closed. */
    private readonly onClose: () => void,
  ) {
    this.up = { from: client, to: upstream, tracker: new FrameTracker(), closing: undefined, done: false };
    this.down = { from: upstream, to: client, tracker: new FrameTracker(), closing: undefined, done: false };
  }

  /** Starts relaying; `fromClient` and `fromUpstream` are what each end sent before the tunnel opened. */
  start(fromClient: Uint8Array | undefined, fromUpstream: Uint8Array | undefined) {
    this.wire(this.up, this.down);
    this.wire(this.down, this.up);
    if (fromUpstream?.length) this.relay(this.down, fromUpstream);
    if (fromClient?.length) this.relay(this.up, fromClient);
  }

  private wire(direction: Direction, reverse: Direction) {
    direction.from.events = {
      data: (chunk) => this.relay(direction, chunk),
      // `to` of the reverse direction has room again.
      drain: () => reverse.from.resume(),
      // One end stopped sending (a FIN): a WebSocket has no use for a
      // half-open connection, so both are closed, as when one closes; a
      // socket whose peer stopped reading is cut after the grace period.
      end: () => this.end(),
      close: () => this.end(),
    };
  }

  private relay(direction: Direction, chunk: Uint8Array) {
    if (direction.closing) return this.relayWhileClosing(direction, chunk);
    direction.tracker.advance(chunk);
    if (!direction.to.write(chunk)) direction.from.pause();
  }

  /**
   * The proxy is closing: the frame in progress is finished, then the proxy's
   * close frame goes out. What the end sends after that is its answer to the
   * close frame it got from the proxy; once that has come, its socket closes.
   */
  private relayWhileClosing(direction: Direction, chunk: Uint8Array) {
    let rest = chunk;
    if (!direction.done) {
      const used = direction.tracker.advance(chunk, true);
      if (used > 0) direction.to.write(chunk.subarray(0, used));
      if (!direction.tracker.atBoundary) return;
      this.sendClose(direction);
      rest = chunk.subarray(used);
    }
    direction.tracker.advance(rest);
    if (direction.tracker.sawClose) direction.from.end();
  }

  private sendClose(direction: Direction) {
    direction.done = true;
    direction.tracker.sawClose = false;
    direction.to.write(direction.closing!);
    direction.from.resume();
  }

  /**
   * Ends the tunnel with a close frame to each end (e.g. 1001), each sent at
   * the next frame boundary; the sockets close once the ends have answered,
   * or after a grace period.
   */
  close(code: number, reason: string) {
    if (this.ending || this.down.closing) return;
    this.down.closing = closeFrame(code, reason, false);
    this.up.closing = closeFrame(code, reason, true);
    for (const direction of [this.down, this.up]) {
      // This end has already sent its own close frame: the other end has it.
      if (direction.tracker.sawClose) direction.done = true;
      else if (direction.tracker.atBoundary) this.sendClose(direction);
    }
    this.timer = setTimeout(() => this.end(), CLOSE_GRACE_MS);
  }

  /** One socket closed (or the grace period is over): the other is ended too. */
  private end() {
    if (this.ending) return this.settle();
    this.ending = true;
    clearTimeout(this.timer);
    this.client.end();
    this.upstream.end();
    // An end that does not read what is left is cut after the grace period.
    this.timer = setTimeout(() => {
      this.client.destroy();
      this.upstream.destroy();
      this.settle();
    }, CLOSE_GRACE_MS);
    this.settle();
  }

  private settle() {
    if (this.finished || !this.client.closed || !this.upstream.closed) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.onClose();
  }
}
