// Message bodies as push streams with backpressure. Bodies mostly go from one
// socket to another (client → target, target → client), and a socket can only
// be paused and resumed, so the contract is the socket's: the source pushes
// chunks, the sink answers `false` when it is full, and the source waits for
// `resume()`. Web streams appear only at the HTTP/2 listener (Bun.serve).

export interface BodySink {
  /** A chunk of the body. `false`: pause until the source's `resume()` is called. */
  data(chunk: Uint8Array): boolean;
  end(): void;
  error(error: Error): void;
}

export interface BodySource {
  /** The body's length in bytes, when it is known in advance. */
  readonly length: number | undefined;
  /** Starts delivering into `sink`; may deliver chunks before it returns. Called once. */
  start(sink: BodySink): void;
  /** The sink has room again. */
  resume(): void;
  /** The consumer is gone: the rest of the body is not wanted. */
  cancel(reason: Error): void;
}

/** A body already in memory, in one or more chunks. */
export class BytesSource implements BodySource {
  private sink: BodySink | undefined;
  private next = 0;
  private cancelled = false;
  readonly length: number;

  constructor(private readonly chunks: Uint8Array[]) {
    this.length = chunks.reduce((n, c) => n + c.byteLength, 0);
  }

  start(sink: BodySink) {
    this.sink = sink;
    this.resume();
  }

  resume() {
    const sink = this.sink;
    if (!sink || this.cancelled) return;
    while (this.next < this.chunks.length) {
      if (!sink.data(this.chunks[this.next++]!)) return;
    }
    if (this.next === this.chunks.length) {
      this.next++;
      sink.end();
    }
  }

  cancel() {
    this.cancelled = true;
  }
}

/** A web ReadableStream as a BodySource (HTTP/2 request bodies, spilled buffers). */
export class WebStreamSource implements BodySource {
  private reader: { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(reason?: unknown): Promise<void> } | undefined;
  private sink: BodySink | undefined;
  private reading = false;
  private paused = false;
  private finished = false;

  constructor(
    private readonly stream: ReadableStream<Uint8Array>,
    readonly length: number | undefined,
    private readonly onFinish?: () => void,
  ) {}

  start(sink: BodySink) {
    this.sink = sink;
    this.reader = this.stream.getReader();
    void this.pump();
  }

  resume() {
    this.paused = false;
    if (!this.reading) void this.pump();
  }

  cancel(reason: Error) {
    if (this.finished) return;
    this.finish();
    void this.reader?.cancel(reason).catch(() => {});
  }

  private finish() {
    this.finished = true;
    this.onFinish?.();
  }

  private async pump() {
    const reader = this.reader!;
    const sink = this.sink!;
    this.reading = true;
    try {
      while (!this.paused && !this.finished) {
        const { value, done } = await reader.read();
        if (this.finished) return;
        if (done) {
          this.finish();
          sink.end();
          return;
        }
        if (value?.byteLength && !sink.data(value)) this.paused = true;
      }
    } catch (error) {
      if (this.finished) return;
      this.finish();
      sink.error(error as Error);
    } finally {
      this.reading = false;
    }
  }
}

/**
 * A BodySource as a web ReadableStream (HTTP/2 responses): pulled by the
 * server as it sends, so the source is paused while the client is slow.
 * `onDone` learns how many bytes went out and whether the body broke off.
 */
export function toReadableStream(source: BodySource, onDone?: (outcome: { bytes: number; error?: string }) => void): ReadableStream<Uint8Array> {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let started = false;
  let closed = false;
  let bytes = 0;
  const over = (error?: string) => {
    if (closed) return;
    closed = true;
    onDone?.(error ? { bytes, error } : { bytes });
  };
  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
      },
      pull() {
        if (started) return source.resume();
        started = true;
        source.start({
          data(chunk) {
            if (closed) return false;
            bytes += chunk.byteLength;
            controller.enqueue(chunk);
            return (controller.desiredSize ?? 0) > 0;
          },
          end() {
            if (closed) return;
            over();
            controller.close();
          },
          error(error) {
            if (closed) return;
            over(error.message);
            controller.error(error);
          },
        });
      },
      cancel(reason) {
        over("client disconnected");
        source.cancel(reason instanceof Error ? reason : new Error(String(reason ?? "cancelled")));
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk?.byteLength ?? 0 },
  );
}

/** Reads a whole body into memory (for small bodies of known length). */
export function readAll(source: BodySource): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    source.start({
      data(chunk) {
        chunks.push(chunk);
        return true;
      },
      end: () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)),
      error: reject,
    });
  });
}
