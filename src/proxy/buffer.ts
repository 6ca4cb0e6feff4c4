// Body buffering (--buffer-requests / --buffer-responses): the whole body is
// read before it is forwarded, in memory up to --buffer-memory and in a temp
// file beyond, so a slow client or app never holds the other side open and a
// big body never sits in RAM. Over the limit the read stops at once.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export class BodyTooLarge extends Error {
  override name = "BodyTooLarge";
}

export interface BufferedBody {
  size: number;
  /** The body to send: a Blob (memory) or a stream over the spill file. */
  body: Blob | ReadableStream<Uint8Array>;
  /** Removes the spill file, if any; safe to call more than once. */
  dispose(): void;
}

function spillPath(): string {
  return path.join(os.tmpdir(), `parachute-buffer-${process.pid}-${crypto.randomUUID()}`);
}

/** Reads `stream` fully. Throws BodyTooLarge past `maxBytes` (0 = unlimited). */
export async function bufferBody(stream: ReadableStream<Uint8Array>, memoryLimit: number, maxBytes: number): Promise<BufferedBody> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  let file: string | undefined;
  let fd: number | undefined;
  const dispose = () => {
    if (fd !== undefined) fs.closeSync(fd);
    fd = undefined;
    if (file) fs.rmSync(file, { force: true });
    file = undefined;
  };
  try {
    for await (const chunk of stream) {
      size += chunk.byteLength;
      if (maxBytes > 0 && size > maxBytes) throw new BodyTooLarge(`body is larger than ${maxBytes} bytes`);
      if (fd === undefined && size > memoryLimit) {
        file = spillPath();
        fd = fs.openSync(file, "w+", 0o600);
        for (const held of chunks) fs.writeSync(fd, held);
        chunks.length = 0;
      }
      if (fd !== undefined) fs.writeSync(fd, chunk);
      else chunks.push(chunk);
    }
  } catch (error) {
    dispose();
    throw error;
  }
  if (fd === undefined) return { size, body: new Blob(chunks as unknown as NonNullable<ConstructorParameters<typeof Blob>[0]>), dispose };
  fs.closeSync(fd);
  fd = undefined;
  const spilled = file!;
  // Stream the spill file back and remove it when it has been read or abandoned.
  const reader = Bun.file(spilled).stream().getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(out) {
      const { value, done } = await reader.read();
      if (done) {
        out.close();
        dispose();
      } else out.enqueue(value);
    },
    cancel() {
      dispose();
      return reader.cancel();
    },
  });
  return { size, body, dispose };
}
