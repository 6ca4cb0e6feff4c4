// Body buffering (--buffer-requests / --buffer-responses): the whole body is
// read before it is forwarded, in memory up to --buffer-memory and in a temp
// file beyond, so a slow client or app never holds the other side open and a
// big body never sits in RAM. Over the limit the read stops at once. The
// spill file is written asynchronously: a large upload never stalls the
// event loop, and the source is paused while a write is pending.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BytesSource, WebStreamSource, type BodySource } from "../data/body.ts";

export class BodyTooLarge extends Error {
  override name = "BodyTooLarge";
}

/**
 * A body cut off past `maxBytes`: the consumer gets BodyTooLarge (a 413)
 * instead of the rest. For streamed uploads of unknown length, whose size
 * only shows as they arrive.
 */
export function limitBody(source: BodySource, maxBytes: number): BodySource {
  let seen = 0;
  return {
    length: source.length,
    start(sink) {
      source.start({
        data(chunk) {
          seen += chunk.byteLength;
          if (seen <= maxBytes) return sink.data(chunk);
          source.cancel(new BodyTooLarge(`body is larger than ${maxBytes} bytes`));
          sink.error(new BodyTooLarge(`body is larger than ${maxBytes} bytes`));
          return false;
        },
        end: () => sink.end(),
        error: (error) => sink.error(error),
      });
    },
    resume: () => source.resume(),
    cancel: (reason) => source.cancel(reason),
  };
}

export interface BufferedBody {
  size: number;
  /** The body to send, from memory or from the spill file. */
  source: BodySource;
  /** Removes the spill file, if any; safe to call more than once. */
  dispose(): void;
}

function spillPath(): string {
  return path.join(os.tmpdir(), `parachute-buffer-${process.pid}-${crypto.randomUUID()}`);
}

/** Reads `source` fully. Rejects with BodyTooLarge past `maxBytes` (0 = unlimited). */
export function bufferBody(source: BodySource, memoryLimit: number, maxBytes: number): Promise<BufferedBody> {
  return new Promise((resolve, reject) => {
    let chunks: Uint8Array[] = [];
    let size = 0;
    let file: string | undefined;
    let handle: Promise<fs.promises.FileHandle> | undefined;
    let writing: Promise<unknown> = Promise.resolve();
    let failed = false;
    const dispose = () => {
      const spilled = file;
      file = undefined;
      if (!spilled) return;
      void handle?.then((h) => h.close()).catch(() => {});
      fs.rm(spilled, { force: true }, () => {});
    };
    const fail = (error: Error) => {
      if (failed) return;
      failed = true;
      dispose();
      reject(error);
    };
    /** Appends to the spill file; the source waits until the write is done. */
    const spill = (data: Uint8Array[]) => {
      if (!handle) {
        file = spillPath();
        handle = fs.promises.open(file, "w+", 0o600);
      }
      const h = handle;
      writing = writing.then(async () => {
        const fd = await h;
        for (const chunk of data) await fd.write(chunk);
      });
      writing.then(
        () => source.resume(),
        (error) => {
          source.cancel(error as Error);
          fail(error as Error);
        },
      );
    };
    source.start({
      data(chunk) {
        if (failed) return false;
        size += chunk.byteLength;
        if (maxBytes > 0 && size > maxBytes) {
          source.cancel(new BodyTooLarge(`body is larger than ${maxBytes} bytes`));
          fail(new BodyTooLarge(`body is larger than ${maxBytes} bytes`));
          return false;
        }
        if (!handle && size <= memoryLimit) {
          chunks.push(chunk);
          return true;
        }
        const pending = handle ? [chunk] : [...chunks, chunk];
        chunks = [];
        spill(pending);
        return false;
      },
      end() {
        if (failed) return;
        if (!handle) return resolve({ size, source: new BytesSource(chunks), dispose });
        const spilled = file!;
        writing.then(async () => {
          await (await handle!).close();
          handle = undefined;
          resolve({ size, source: new WebStreamSource(Bun.file(spilled).stream(), size, dispose), dispose });
        }, fail);
      },
      error: fail,
    });
  });
}
