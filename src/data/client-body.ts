// A request body as it arrives on the client's connection, delimited by its
// framing (Content-Length or chunked). The connection feeds it what it reads;
// it passes the body on with backpressure (the socket is paused while the
// target is slow) and says where the body ends, so that the bytes after it
// are the next request.
import { ChunkedDecoder, ChunkedError } from "../http/chunked.ts";
import type { BodyFraming } from "../http/request-head.ts";
import type { BodySink, BodySource } from "./body.ts";
import type { Transport } from "./transport.ts";

/** A request body the client framed badly (a bad chunk size): 400, and the connection closes. */
export class MalformedBody extends Error {
  override name = "MalformedBody";
}

/** Held before the body has a consumer; past this the socket is paused. */
const EARLY_LIMIT = 64 * 1024;
const CONTINUE = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n");

export class ClientBody implements BodySource {
  readonly length: number | undefined;
  /** Every byte of the body has been read from the connection. */
  complete = false;
  private remaining: number;
  private readonly decoder: ChunkedDecoder | undefined;
  private sink: BodySink | undefined;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private paused = false;
  /** The consumer is gone: what still arrives is read and dropped. */
  private discarding = false;
  private failure: Error | undefined;
  private ended = false;

  constructor(
    framing: Exclude<BodyFraming, { kind: "none" }>,
    private readonly transport: Transport,
    /** Send `100 Continue` when the body is first wanted (RFC 9110 §10.1.1). */
    private expectContinue: boolean,
  ) {
    this.length = framing.kind === "length" ? framing.length : undefined;
    this.remaining = framing.kind === "length" ? framing.length : Infinity;
    this.decoder = framing.kind === "chunked" ? new ChunkedDecoder() : undefined;
  }

  /** Bytes from the connection; returns how many belong to this body (the rest is the next request). */
  feed(chunk: Uint8Array): number {
    if (this.complete) return 0;
    let used: number;
    if (this.decoder) {
      try {
        used = this.decoder.feed(chunk, (data) => this.deliver(data));
      } catch (error) {
        this.fail(new MalformedBody((error as ChunkedError).message));
        return chunk.length;
      }
      if (this.decoder.done) this.complete = true;
    } else {
      used = Math.min(chunk.length, this.remaining);
      this.remaining -= used;
      this.deliver(used === chunk.length ? chunk : chunk.subarray(0, used));
      if (this.remaining === 0) this.complete = true;
    }
    if (this.complete) this.finish();
    return used;
  }

  /** The body broke off (bad framing, the client left). */
  fail(error: Error) {
    if (this.failure || this.ended) return;
    this.failure = error;
    this.complete = true;
    if (this.sink && !this.discarding) this.sink.error(error);
  }

  /** Why the body failed, if it did (a malformed body is answered 400). */
  get error(): Error | undefined {
    return this.failure;
  }

  start(sink: BodySink) {
    this.sink = sink;
    if (this.expectContinue && !this.complete) this.transport.write(CONTINUE);
    this.expectContinue = false;
    if (this.failure) return sink.error(this.failure);
    this.resume();
  }

  resume() {
    const sink = this.sink;
    if (!sink || this.discarding) return;
    this.paused = false;
    while (this.pending.length) {
      const chunk = this.pending.shift()!;
      this.pendingBytes -= chunk.byteLength;
      if (!sink.data(chunk)) {
        this.paused = true;
        return;
      }
    }
    this.transport.resume();
    this.finish();
  }

  /** The body is not wanted (answered without it, or the target is gone): read and dropped from now on. */
  cancel() {
    this.discarding = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.transport.resume();
  }

  private deliver(data: Uint8Array) {
    if (this.discarding || data.byteLength === 0) return;
    if (!this.sink || this.paused || this.pending.length) {
      // Bun hands over a fresh buffer per read, so holding a view is safe.
      this.pending.push(data);
      this.pendingBytes += data.byteLength;
      if (!this.sink ? this.pendingBytes > EARLY_LIMIT : true) this.transport.pause();
      return;
    }
    if (!this.sink.data(data)) {
      this.paused = true;
      this.transport.pause();
    }
  }

  private finish() {
    if (this.ended || !this.complete || this.failure || this.pending.length || !this.sink || this.discarding) return;
    this.ended = true;
    this.sink.end();
  }
}
