// The chunked transfer coding (RFC 9112 §7.1), decoded incrementally: bytes
// arrive in whatever pieces the socket gives, and the decoder says where the
// message ends so that the bytes after it belong to the next one.

export class ChunkedError extends Error {
  override name = "ChunkedError";
}

const enum State {
  Size,
  SizeLineEnd,
  Data,
  DataCr,
  DataLf,
  Trailer,
  Done,
}

const CR = 13;
const LF = 10;
/** Longest chunk-size line (size and extensions) and trailer section accepted. */
const MAX_LINE = 4096;
const MAX_TRAILERS = 16 * 1024;

function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  if (byte >= 97 && byte <= 102) return byte - 87;
  if (byte >= 65 && byte <= 70) return byte - 55;
  return -1;
}

export class ChunkedDecoder {
  private state = State.Size;
  private size = 0;
  private digits = 0;
  /** Bytes of the current size line, or of the trailer section. */
  private lineBytes = 0;
  private inExtension = false;
  private afterSpace = false;
  /** In the trailer section: bytes of the current trailer line (0 = at a line start). */
  private trailerLine = 0;
  private sawCr = false;
  /** Payload bytes seen so far (the framing not counted). */
  payloadBytes = 0;

  get done(): boolean {
    return this.state === State.Done;
  }

  /**
   * Consumes `input` up to the end of the message and returns how many bytes
   * it used (all of them unless the message ended inside). Chunk data is
   * passed to `onData` as views of `input`. Throws ChunkedError on bad framing.
   */
  feed(input: Uint8Array, onData?: (data: Uint8Array) => void): number {
    let i = 0;
    const n = input.length;
    while (i < n && this.state !== State.Done) {
      switch (this.state) {
        case State.Size: {
          const byte = input[i]!;
          if (this.inExtension) {
            if (byte === CR) this.state = State.SizeLineEnd;
            else if (byte === LF || byte < 0x20 && byte !== 9) throw new ChunkedError("malformed chunk extension");
          } else if (byte === CR) {
            if (this.digits === 0) throw new ChunkedError("missing chunk size");
            this.state = State.SizeLineEnd;
          } else if (byte === 59 /* ; */) {
            if (this.digits === 0) throw new ChunkedError("missing chunk size");
            this.inExtension = true;
          } else if (byte === 32 || byte === 9) {
            // Whitespace may only precede an extension (`5 ;x`), never split the size.
            if (this.digits === 0) throw new ChunkedError("missing chunk size");
            this.afterSpace = true;
          } else if (this.afterSpace) {
            throw new ChunkedError("malformed chunk size line");
          } else {
            const value = hexValue(byte);
            if (value === -1) throw new ChunkedError(`invalid chunk size character ${JSON.stringify(String.fromCharCode(byte))}`);
            if (++this.digits > 12) throw new ChunkedError("chunk size too large");
            this.size = this.size * 16 + value;
          }
          if (++this.lineBytes > MAX_LINE) throw new ChunkedError("chunk size line too long");
          i++;
          break;
        }
        case State.SizeLineEnd:
          if (input[i] !== LF) throw new ChunkedError("chunk size line not ended by CRLF");
          i++;
          this.lineBytes = 0;
          this.inExtension = false;
          this.afterSpace = false;
          this.digits = 0;
          if (this.size === 0) {
            this.state = State.Trailer;
            this.trailerLine = 0;
          } else this.state = State.Data;
          break;
        case State.Data: {
          const take = Math.min(this.size, n - i);
          this.payloadBytes += take;
          if (onData) onData(input.subarray(i, i + take));
          this.size -= take;
          i += take;
          if (this.size === 0) this.state = State.DataCr;
          break;
        }
        case State.DataCr:
          if (input[i] !== CR) throw new ChunkedError("chunk data not followed by CRLF");
          this.state = State.DataLf;
          i++;
          break;
        case State.DataLf:
          if (input[i] !== LF) throw new ChunkedError("chunk data not followed by CRLF");
          this.state = State.Size;
          i++;
          break;
        case State.Trailer: {
          // Trailer fields are read and dropped; an empty line ends the message.
          const byte = input[i]!;
          i++;
          if (++this.lineBytes > MAX_TRAILERS) throw new ChunkedError("trailer section too long");
          if (this.sawCr) {
            if (byte !== LF) throw new ChunkedError("trailer line not ended by CRLF");
            this.sawCr = false;
            if (this.trailerLine === 0) this.state = State.Done;
            this.trailerLine = 0;
          } else if (byte === CR) this.sawCr = true;
          else if (byte === LF) throw new ChunkedError("trailer line not ended by CRLF");
          else this.trailerLine++;
          break;
        }
      }
    }
    return i;
  }
}

/** One chunk of the chunked coding around `data` (never the last chunk: that is LAST_CHUNK). */
export function encodeChunk(data: Uint8Array): Uint8Array {
  const head = `${data.byteLength.toString(16)}\r\n`;
  const out = new Uint8Array(head.length + data.byteLength + 2);
  for (let i = 0; i < head.length; i++) out[i] = head.charCodeAt(i);
  out.set(data, head.length);
  out[out.length - 2] = CR;
  out[out.length - 1] = LF;
  return out;
}

export const LAST_CHUNK = new TextEncoder().encode("0\r\n\r\n");
