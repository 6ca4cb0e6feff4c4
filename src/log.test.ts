import { expect, test } from "bun:test";
import { nextPiece } from "./log.ts";

const line = (n: number, fill = "x") => `{"msg":"${fill.repeat(n)}"}\n`;

test("a write carries whole lines, at most 4 KiB (PIPE_BUF), so concurrent writers never interleave mid-line", () => {
  const text = Array.from({ length: 100 }, () => line(90)).join("");
  const piece = nextPiece(text);
  expect(Buffer.byteLength(piece)).toBeLessThanOrEqual(4096);
  expect(piece.endsWith("\n")).toBe(true);
  expect(text.startsWith(piece)).toBe(true);
  expect(Buffer.byteLength(piece)).toBeGreaterThan(4096 - 101);
});

test("short text is written whole", () => {
  expect(nextPiece(line(10) + line(20))).toBe(line(10) + line(20));
});

test("multi-byte characters count as bytes", () => {
  const text = line(1500, "é") + line(1500, "é") + line(1500, "é");
  const piece = nextPiece(text);
  expect(piece).toBe(line(1500, "é"));
});

test("a single line longer than 4 KiB goes alone, whole", () => {
  const long = line(5000);
  expect(nextPiece(long + line(3))).toBe(long);
});
