import { describe, expect, test } from "bun:test";
import { ChunkedDecoder, ChunkedError, encodeChunk } from "./chunked.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (parts: Uint8Array[]) => new TextDecoder().decode(Buffer.concat(parts));

function decodeAll(input: string, pieceSize = input.length): { data: string; used: number; done: boolean } {
  const decoder = new ChunkedDecoder();
  const out: Uint8Array[] = [];
  const all = bytes(input);
  let used = 0;
  for (let i = 0; i < all.length && !decoder.done; i += pieceSize) {
    used += decoder.feed(all.subarray(i, i + pieceSize), (d) => out.push(d.slice()));
  }
  return { data: text(out), used, done: decoder.done };
}

describe("ChunkedDecoder", () => {
  test("decodes chunks, extensions and trailers, and stops at the end of the message", () => {
    const message = "5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    const result = decodeAll(message + "GET / HTTP/1.1");
    expect(result).toEqual({ data: "hello world", used: message.length, done: true });
  });

  test("the same bytes one at a time give the same result", () => {
    expect(decodeAll("a\r\n0123456789\r\n0\r\n\r\n", 1)).toEqual({ data: "0123456789", used: 20, done: true });
  });

  test("hex sizes in either case", () => {
    expect(decodeAll(`1F\r\n${"x".repeat(31)}\r\n0\r\n\r\n`).data.length).toBe(31);
    expect(decodeAll(`1f\r\n${"x".repeat(31)}\r\n0\r\n\r\n`).data.length).toBe(31);
  });

  test.each([
    ["an invalid size", "zz\r\nhello\r\n0\r\n\r\n"],
    ["a missing size", "\r\nhello\r\n0\r\n\r\n"],
    ["a size split by a space", "5 5\r\nhello\r\n"],
    ["a size over 12 hex digits", "1000000000000\r\n"],
    ["data not followed by CRLF", "5\r\nhelloX\r\n0\r\n\r\n"],
    ["a bare LF after the size", "5\nhello\r\n0\r\n\r\n"],
    ["a bare LF in the trailers", "0\r\nX: y\n\r\n"],
  ])("%s is an error", (_name, input) => {
    expect(() => decodeAll(input)).toThrow(ChunkedError);
  });

  test("an incomplete message is not done", () => {
    expect(decodeAll("5\r\nhel").done).toBe(false);
  });
});

test("encodeChunk frames data as one chunk", () => {
  expect(new TextDecoder().decode(encodeChunk(bytes("x".repeat(26))))).toBe(`1a\r\n${"x".repeat(26)}\r\n`);
});
