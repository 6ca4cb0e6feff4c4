import { describe, expect, test } from "bun:test";
import { parseRequestHead, type HeadError, type RequestHead } from "./request-head.ts";

function ok(head: string): RequestHead {
  const parsed = parseRequestHead(head);
  if ("status" in parsed) throw new Error(`expected a head, got ${parsed.status} ${parsed.reason}`);
  return parsed;
}
function refused(head: string): HeadError {
  const parsed = parseRequestHead(head);
  if (!("status" in parsed)) throw new Error("expected a refusal");
  return parsed;
}

describe("request line", () => {
  test("method, target and version are taken as sent", () => {
    const head = ok("GET //a/../b?x=%20&y HTTP/1.1\r\nHost: a.test");
    expect(head.method).toBe("GET");
    expect(head.target).toBe("//a/../b?x=%20&y");
    expect(head.version).toBe("HTTP/1.1");
    expect(head.fields.get("host")).toBe("a.test");
  });

  test.each([
    ["GET  / HTTP/1.1", 400],
    ["GET / HTTP/1.1 extra", 400],
    ["G(T / HTTP/1.1", 400],
    ["GET /\x01 HTTP/1.1", 400],
    ["GET / HTTP/1", 400],
    ["GET / HTTP/2.0", 505],
    ["GET / HTTP/1.2", 505],
  ])("%j is refused with %d", (line, status) => {
    expect(refused(`${line}\r\nHost: a`).status as number).toBe(status as number);
  });
});

describe("header fields", () => {
  test("names keep their case, repeated fields stay apart, values are trimmed", () => {
    const head = ok("GET / HTTP/1.1\r\nHost: a\r\nX-Multi: 1\r\nx-multi:  2 \r\nCookie: a=b");
    expect(head.fields.getAll("x-multi")).toEqual(["1", "2"]);
    expect(head.fields.serialize()).toBe("Host: a\r\nX-Multi: 1\r\nx-multi: 2\r\nCookie: a=b\r\n");
  });

  test.each([
    ["whitespace before the colon", "X-A : 1"],
    ["obs-fold", "X-A: 1\r\n continued"],
    ["a bare LF inside a line", "X-A: 1\nX-B: 2"],
    ["a bare CR", "X-A: 1\rX-B: 2"],
    ["a NUL in a value", "X-A: a\x00b"],
    ["a field without a colon", "X-A"],
    ["an empty name", ": value"],
  ])("%s is a 400", (_name, line) => {
    expect(refused(`GET / HTTP/1.1\r\nHost: a\r\n${line}`).status).toBe(400);
  });

  test("more than 256 fields is a 431", () => {
    const many = Array.from({ length: 300 }, (_, i) => `X-${i}: v`).join("\r\n");
    expect(refused(`GET / HTTP/1.1\r\nHost: a\r\n${many}`).status).toBe(431);
  });
});

describe("Host", () => {
  test("HTTP/1.1 without Host is a 400; HTTP/1.0 without one is fine", () => {
    expect(refused("GET / HTTP/1.1\r\nAccept: */*").status).toBe(400);
    expect(ok("GET / HTTP/1.0").fields.get("host")).toBeUndefined();
  });
  test("an absolute-form target carries its own host", () => {
    expect(ok("GET http://a.test/x HTTP/1.1").target).toBe("http://a.test/x");
  });
  test("two Host fields are a 400", () => {
    expect(refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b").status).toBe(400);
  });
});

describe("body framing (RFC 9112 §6.3)", () => {
  test("no length and no coding: no body", () => {
    expect(ok("POST / HTTP/1.1\r\nHost: a").body).toEqual({ kind: "none" });
  });
  test("Content-Length, repeated identical values as one", () => {
    expect(ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5").body).toEqual({ kind: "length", length: 5 });
    const head = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5");
    expect(head.body).toEqual({ kind: "length", length: 5 });
    expect(head.fields.getAll("content-length")).toEqual(["5"]);
    expect(ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5").fields.get("content-length")).toBe("5");
  });
  test.each(["5, 6", "-1", "0x10", "1e3", "99999999999999999999", ""])("Content-Length %j is a 400", (value) => {
    expect(refused(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${value}`).status).toBe(400);
  });
  test("chunked", () => {
    expect(ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked").body).toEqual({ kind: "chunked" });
  });
  test.each([
    ["xchunked", 400],
    ["gzip", 400],
    ["chunked, gzip", 400],
    ["gzip, chunked", 501],
    ["chunked, chunked", 400],
  ])("Transfer-Encoding %j is refused with %d", (value, status) => {
    expect(refused(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ${value}`).status as number).toBe(status as number);
  });
  test("Transfer-Encoding with Content-Length is a 400 (a smuggling vector)", () => {
    expect(refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked").status).toBe(400);
  });
  test("Transfer-Encoding in HTTP/1.0 is a 400", () => {
    expect(refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked").status).toBe(400);
  });
});

describe("connection", () => {
  test("HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes", () => {
    expect(ok("GET / HTTP/1.1\r\nHost: a").keepAlive).toBe(true);
    expect(ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close").keepAlive).toBe(false);
    expect(ok("GET / HTTP/1.0\r\nConnection: keep-alive").keepAlive).toBe(false);
  });
  test("Expect: 100-continue and Upgrade (only when Connection names it)", () => {
    const head = ok("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nConnection: Upgrade\r\nUpgrade: WebSocket");
    expect(head.expectContinue).toBe(true);
    expect(head.upgrade).toBe("websocket");
    expect(ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket").upgrade).toBeUndefined();
  });
});
