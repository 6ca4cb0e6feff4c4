import { expect, test } from "bun:test";
import { readFieldLines } from "./field-lines.ts";

function read(head: string, start = 0, maxFields = 100) {
  const result = readFieldLines(head, start, maxFields);
  if (!("fields" in result)) throw new Error(`unexpected ${JSON.stringify(result)}`);
  const out: [string, string][] = [];
  result.fields.forEach((value, name) => out.push([name, value]));
  return out;
}

test("each line becomes a field: name as written, value without surrounding spaces and tabs", () => {
  expect(read("Host: a.test\r\nX-Pad:  \t v a l \t \r\nAccept:*/*")).toEqual([
    ["Host", "a.test"],
    ["X-Pad", "v a l"],
    ["Accept", "*/*"],
  ]);
});

test("a value may hold colons, be empty, or carry obs-text; repeated fields stay separate", () => {
  expect(read("Host: a.test:8080\r\nX-Empty:\r\nX-Blank:   \r\nX-Latin: caf\xe9\xff\r\nCookie: a=1\r\nCookie: b=2")).toEqual([
    ["Host", "a.test:8080"],
    ["X-Empty", ""],
    ["X-Blank", ""],
    ["X-Latin", "caf\xe9\xff"],
    ["Cookie", "a=1"],
    ["Cookie", "b=2"],
  ]);
});

test("reading starts after the start line; nothing after it is no fields", () => {
  const head = "GET / HTTP/1.1\r\nHost: a\r\nX: 1";
  expect(read(head, "GET / HTTP/1.1\r\n".length)).toEqual([
    ["Host", "a"],
    ["X", "1"],
  ]);
  expect(read("GET / HTTP/1.0\r\n", 16)).toEqual([]);
  expect(read("")).toEqual([]);
});

test("malformed lines are refused: no name, spaces around the name, folding, bare CR or LF, NUL, controls", () => {
  const bad = [
    ": value",
    "Host a.test",
    "Host : a.test",
    " Host: a.test",
    "Ho st: a",
    "Host: a\r\n folded",
    "Host: a\r\n\tfolded",
    "Host: a\nX: b",
    "Host: a\rX: b",
    "Host: a\r\n",
    "Host: a\r\n\r\nX: b",
    "X: a\x00b",
    "X: a\x7fb",
    "X: a\x1bb",
    "X\u0100: a",
    "X: \u0100",
    "Host(x): a",
  ];
  for (const head of bad) expect(readFieldLines(head, 0, 100)).toEqual({ malformed: true, tooMany: false });
});

test("more fields than the limit: tooMany; exactly the limit is fine", () => {
  expect(read("A: 1\r\nB: 2", 0, 2)).toEqual([
    ["A", "1"],
    ["B", "2"],
  ]);
  expect(readFieldLines("A: 1\r\nB: 2\r\nC: 3", 0, 2)).toEqual({ malformed: true, tooMany: true });
  expect(readFieldLines("A: 1", 0, 0)).toEqual({ malformed: true, tooMany: true });
});
