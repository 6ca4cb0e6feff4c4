import { expect, test } from "bun:test";
import { MAX_V1_BYTES, parseProxyHeader } from "./proxy-protocol.ts";

const text = (s: string) => new TextEncoder().encode(s);
const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A version 2 header: command (0 LOCAL, 1 PROXY), family/protocol byte, address block (TLVs included). */
function v2(command: number, familyProtocol: number, block: number[]): Uint8Array {
  return new Uint8Array([...SIGNATURE, 0x20 | command, familyProtocol, block.length >> 8, block.length & 0xff, ...block]);
}
const TCP4_BLOCK = [203, 0, 113, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb];
const ipv6 = (groups: number[]) => groups.flatMap((g) => [g >> 8, g & 0xff]);
const TCP6_BLOCK = [...ipv6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42]), ...ipv6([0xfd00, 0, 0, 0, 0, 0, 0, 1]), 0xc3, 0x50, 0x01, 0xbb];

test("v1 TCP4 and TCP6: the source address, and the header's length", () => {
  const line = "PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\n";
  expect(parseProxyHeader(text(line + "GET / HTTP/1.1\r\n"))).toEqual({ kind: "header", length: line.length, source: "198.51.100.22" });
  const line6 = "PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n";
  expect(parseProxyHeader(text(line6))).toEqual({ kind: "header", length: line6.length, source: "2001:db8::1" });
});

test("v1 UNKNOWN names no client; the rest of its line is ignored", () => {
  expect(parseProxyHeader(text("PROXY UNKNOWN\r\n"))).toEqual({ kind: "header", length: 15, source: undefined });
  expect(parseProxyHeader(text("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")).kind).toBe("header");
});

test("v1 split across chunks is incomplete until its CRLF", () => {
  const line = "PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\n";
  for (let cut = 1; cut < line.length; cut++) expect(parseProxyHeader(text(line.slice(0, cut)))).toEqual({ kind: "incomplete" });
  expect(parseProxyHeader(text(line)).kind).toBe("header");
});

test("v1 bad lines are invalid: protocol, addresses of the wrong family, ports, field count, bare LF", () => {
  for (const line of [
    "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
    "PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n",
    "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
  ]) {
    expect({ line, kind: parseProxyHeader(text(line)).kind }).toEqual({ line, kind: "invalid" });
  }
});

test("v1 longer than 107 bytes is invalid, with or without its CRLF yet", () => {
  const long = `PROXY UNKNOWN ${"x".repeat(MAX_V1_BYTES)}`;
  expect(parseProxyHeader(text(long)).kind).toBe("invalid");
  expect(parseProxyHeader(text(`${long}\r\n`)).kind).toBe("invalid");
  const exact = `PROXY UNKNOWN ${"x".repeat(MAX_V1_BYTES - 16)}\r\n`;
  expect(exact.length).toBe(MAX_V1_BYTES);
  expect(parseProxyHeader(text(exact)).kind).toBe("header");
});

test("v2 PROXY over TCP4 and TCP6: the source address; TLVs after the addresses are skipped", () => {
  expect(parseProxyHeader(v2(1, 0x11, TCP4_BLOCK))).toEqual({ kind: "header", length: 28, source: "203.0.113.7" });
  expect(parseProxyHeader(v2(1, 0x21, TCP6_BLOCK))).toEqual({ kind: "header", length: 52, source: "2001:db8::42" });
  // An ALPN TLV (type 0x01) and a NOOP one (0x04).
  const tlvs = [0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x03, 0, 0, 0];
  const withTlvs = new Uint8Array([...v2(1, 0x11, [...TCP4_BLOCK, ...tlvs]), ...text("GET")]);
  expect(parseProxyHeader(withTlvs)).toEqual({ kind: "header", length: 28 + tlvs.length, source: "203.0.113.7" });
});

test("v2 IPv4-mapped IPv6 source is its IPv4 address", () => {
  const block = [...ipv6([0, 0, 0, 0, 0, 0xffff, 0xcb00, 0x7107]), ...ipv6([0, 0, 0, 0, 0, 0xffff, 0x0a00, 1]), 0, 1, 0, 2];
  expect(parseProxyHeader(v2(1, 0x21, block))).toEqual({ kind: "header", length: 52, source: "203.0.113.7" });
});

test("v2 LOCAL, UNSPEC and UNIX name no client", () => {
  expect(parseProxyHeader(v2(0, 0x00, []))).toEqual({ kind: "header", length: 16, source: undefined });
  // LOCAL ignores whatever addresses it carries.
  expect(parseProxyHeader(v2(0, 0x11, TCP4_BLOCK))).toEqual({ kind: "header", length: 28, source: undefined });
  expect(parseProxyHeader(v2(1, 0x00, []))).toEqual({ kind: "header", length: 16, source: undefined });
  expect(parseProxyHeader(v2(1, 0x31, Array(216).fill(0)))).toEqual({ kind: "header", length: 232, source: undefined });
});

test("v2 split across chunks is incomplete until its last byte", () => {
  const header = v2(1, 0x21, TCP6_BLOCK);
  for (let cut = 1; cut < header.length; cut++) expect(parseProxyHeader(header.subarray(0, cut))).toEqual({ kind: "incomplete" });
  expect(parseProxyHeader(header).kind).toBe("header");
});

test("v2 bad headers are invalid: version, command, family, protocol, address block too short", () => {
  const wrongVersion = v2(1, 0x11, TCP4_BLOCK);
  wrongVersion[12] = 0x11;
  expect(parseProxyHeader(wrongVersion).kind).toBe("invalid");
  expect(parseProxyHeader(v2(2, 0x11, TCP4_BLOCK)).kind).toBe("invalid");
  expect(parseProxyHeader(v2(1, 0x41, TCP4_BLOCK)).kind).toBe("invalid");
  expect(parseProxyHeader(v2(1, 0x13, TCP4_BLOCK)).kind).toBe("invalid");
  expect(parseProxyHeader(v2(1, 0x11, TCP4_BLOCK.slice(0, 11))).kind).toBe("invalid");
  expect(parseProxyHeader(v2(1, 0x21, TCP4_BLOCK)).kind).toBe("invalid");
  // Too short is known from the fixed part alone, before the block arrives.
  expect(parseProxyHeader(v2(1, 0x21, TCP4_BLOCK).subarray(0, 16)).kind).toBe("invalid");
});

test("garbage and a wrong signature are invalid from the first byte that differs", () => {
  expect(parseProxyHeader(text("GET / HTTP/1.1\r\n\r\n")).kind).toBe("invalid");
  expect(parseProxyHeader(new Uint8Array([0x16, 0x03, 0x01])).kind).toBe("invalid");
  expect(parseProxyHeader(text("G")).kind).toBe("invalid");
  expect(parseProxyHeader(text("PROXX")).kind).toBe("invalid");
  expect(parseProxyHeader(text("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n")).kind).toBe("invalid");
  const wrongSignature = v2(1, 0x11, TCP4_BLOCK);
  wrongSignature[11] = 0x0b;
  expect(parseProxyHeader(wrongSignature).kind).toBe("invalid");
  expect(parseProxyHeader(new Uint8Array(SIGNATURE.slice(0, 5))).kind).toBe("incomplete");
  expect(parseProxyHeader(new Uint8Array(0)).kind).toBe("incomplete");
});
