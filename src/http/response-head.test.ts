import { describe, expect, test } from "bun:test";
import { parseResponseHead } from "./response-head.ts";

describe("parseResponseHead", () => {
  test("status, reason phrase as sent, fields in order", () => {
    const head = parseResponseHead("HTTP/1.1 201 Made It\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 3", "GET")!;
    expect(head.status).toBe(201);
    expect(head.reason).toBe("Made It");
    expect(head.fields.getAll("set-cookie")).toEqual(["a=1", "b=2"]);
    expect(head.body).toEqual({ kind: "length", length: 3 });
    expect(head.keepAlive).toBe(true);
  });
  test("an empty reason phrase is allowed, with or without the space", () => {
    expect(parseResponseHead("HTTP/1.1 204 ", "GET")!.reason).toBe("");
    expect(parseResponseHead("HTTP/1.1 204", "GET")!.status).toBe(204);
  });
  test("framing: chunked wins over a length, which is removed; no length means read to close", () => {
    const both = parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5", "GET")!;
    expect(both.body.kind).toBe("chunked");
    expect(both.fields.has("content-length")).toBe(false);
    const close = parseResponseHead("HTTP/1.1 200 OK", "GET")!;
    expect(close.body.kind).toBe("close");
    expect(close.keepAlive).toBe(false);
  });
  test("HEAD, 204 and 304 answers have no body whatever they declare", () => {
    expect(parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 50", "HEAD")!.body.kind).toBe("none");
    expect(parseResponseHead("HTTP/1.1 304 Not Modified\r\nContent-Length: 50", "GET")!.body.kind).toBe("none");
  });
  test("HTTP/1.0 answers close unless they say keep-alive", () => {
    expect(parseResponseHead("HTTP/1.0 200 OK\r\nContent-Length: 1", "GET")!.keepAlive).toBe(false);
    expect(parseResponseHead("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive", "GET")!.keepAlive).toBe(true);
    expect(parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close", "GET")!.keepAlive).toBe(false);
  });
  test("a transfer coding other than chunked is not a response to relay", () => {
    expect(parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked", "GET")).toBeUndefined();
    expect(parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "GET")).toBeUndefined();
  });
  test("a 204 never carries a Content-Length (RFC 9110 §8.6)", () => {
    expect(parseResponseHead("HTTP/1.1 204 No Content\r\nContent-Length: 0", "GET")!.fields.has("content-length")).toBe(false);
  });
  test("garbage and conflicting lengths are not a response", () => {
    expect(parseResponseHead("SSH-2.0-OpenSSH", "GET")).toBeUndefined();
    expect(parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2", "GET")).toBeUndefined();
    expect(parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: x", "GET")).toBeUndefined();
  });
});
