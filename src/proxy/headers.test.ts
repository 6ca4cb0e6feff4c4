import { expect, test } from "bun:test";
import { Fields } from "../http/fields.ts";
import { isWebSocketHandshake, normalizeClientIp, stripHopByHop, upstreamHeaders, type ClientInfo } from "./headers.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const CLIENT: ClientInfo = { ip: "203.0.113.7", scheme: "http" };

function fields(...pairs: [string, string][]): Fields {
  const f = new Fields();
  for (const [name, value] of pairs) f.append(name, value);
  return f;
}

/** The header lines as [name, value] pairs, checking each ends in CRLF. */
function lines(text: string): [string, string][] {
  expect(text.endsWith("\r\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\r\n")
    .map((line) => {
      const colon = line.indexOf(": ");
      return [line.slice(0, colon), line.slice(colon + 2)];
    });
}

/** The lines without the generated X-Request-ID / X-Request-Start and X-Parachute-Target, which are checked on their own. */
const fixed = (text: string) => lines(text).filter(([name]) => name !== "X-Request-ID" && name !== "X-Request-Start" && name !== "X-Parachute-Target");

test("a plain request: headers kept in order and case, X-Forwarded-* and X-Request-* added", () => {
  const before = Date.now();
  const out = upstreamHeaders(fields(["Host", "app.test:8080"], ["accept", "*/*"], ["Cookie", "a=1"], ["Cookie", "b=2"]), CLIENT, false, false, "web-1:3000");
  const after = Date.now();
  expect(fixed(out.lines)).toEqual([
    ["Host", "app.test:8080"],
    ["accept", "*/*"],
    ["Cookie", "a=1"],
    ["Cookie", "b=2"],
    ["X-Forwarded-For", "203.0.113.7"],
    ["X-Forwarded-Proto", "http"],
    ["X-Forwarded-Host", "app.test:8080"],
  ]);
  expect(out.requestId).toMatch(UUID);
  const all = new Map(lines(out.lines));
  expect(all.get("X-Request-ID")).toBe(out.requestId);
  const start = Number(/^t=(\d+)$/.exec(all.get("X-Request-Start")!)![1]);
  expect(start).toBeGreaterThanOrEqual(before);
  expect(start).toBeLessThanOrEqual(after);
  expect(out.clientAddr).toBe("203.0.113.7");
});

test("every request gets its own new id", () => {
  const a = upstreamHeaders(fields(["Host", "h"]), CLIENT, false, false, "t:1").requestId;
  const b = upstreamHeaders(fields(["Host", "h"]), CLIENT, false, false, "t:1").requestId;
  expect(a).not.toBe(b);
});

test("the scheme of the connection is the forwarded proto", () => {
  const out = upstreamHeaders(fields(["Host", "h"]), { ip: "10.0.0.1", scheme: "https" }, false, false, "t:1");
  expect(new Map(lines(out.lines)).get("X-Forwarded-Proto")).toBe("https");
});

test("without forwardHeaders the client's X-Forwarded-* are discarded and replaced", () => {
  const inbound = fields(
    ["Host", "app.test"],
    ["X-Forwarded-For", "6.6.6.6"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "evil.test"],
    ["X-Forwarded-Port", "1"],
    ["X-Other", "kept"],
  );
  const out = upstreamHeaders(inbound, CLIENT, false, false, "t:1");
  expect(fixed(out.lines)).toEqual([
    ["Host", "app.test"],
    ["X-Other", "kept"],
    ["X-Forwarded-For", "203.0.113.7"],
    ["X-Forwarded-Proto", "http"],
    ["X-Forwarded-Host", "app.test"],
  ]);
  expect(out.clientAddr).toBe("203.0.113.7");
});

test("with forwardHeaders the inbound values are trusted: For extended, Proto and Host kept", () => {
  const inbound = fields(
    ["Host", "internal:80"],
    ["X-Forwarded-For", "198.51.100.1, 10.0.0.2"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "www.example.com"],
    ["X-Forwarded-Port", "443"],
  );
  const out = upstreamHeaders(inbound, CLIENT, true, false, "t:1");
  expect(fixed(out.lines)).toEqual([
    ["Host", "internal:80"],
    ["X-Forwarded-Port", "443"],
    ["X-Forwarded-For", "198.51.100.1, 10.0.0.2, 203.0.113.7"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "www.example.com"],
  ]);
  expect(out.clientAddr).toBe("198.51.100.1");
});

test("with forwardHeaders but nothing inbound, the proxy's own values", () => {
  const out = upstreamHeaders(fields(["Host", "app.test"]), { ip: "::1", scheme: "https" }, true, false, "t:1");
  expect(fixed(out.lines)).toEqual([
    ["Host", "app.test"],
    ["X-Forwarded-For", "::1"],
    ["X-Forwarded-Proto", "https"],
    ["X-Forwarded-Host", "app.test"],
  ]);
  expect(out.clientAddr).toBe("::1");
});

test("hop-by-hop headers, and those Connection names, are removed; Connection cannot remove Host or Content-Length's replacement", () => {
  const inbound = fields(
    ["Host", "app.test"],
    ["Connection", "keep-alive, X-Secret, Host, Content-Length, Transfer-Encoding"],
    ["Keep-Alive", "timeout=5"],
    ["Proxy-Connection", "keep-alive"],
    ["TE", "trailers"],
    ["Trailer", "X-Sum"],
    ["Transfer-Encoding", "chunked"],
    ["Upgrade", "h2c"],
    ["Proxy-Authorization", "Basic eA=="],
    ["Proxy-Authenticate", "Basic"],
    ["x-secret", "s3cret"],
    ["Content-Length", "5"],
    ["Expect", "100-continue"],
    ["Accept", "text/html"],
  );
  const out = upstreamHeaders(inbound, CLIENT, false, false, "t:1");
  expect(fixed(out.lines)).toEqual([
    ["Host", "app.test"],
    ["Accept", "text/html"],
    ["X-Forwarded-For", "203.0.113.7"],
    ["X-Forwarded-Proto", "http"],
    ["X-Forwarded-Host", "app.test"],
  ]);
});

test("a WebSocket handshake keeps Upgrade: websocket and Connection: Upgrade, and its Sec-WebSocket-* headers", () => {
  const inbound = fields(
    ["Host", "app.test"],
    ["Upgrade", "websocket"],
    ["Connection", "keep-alive, Upgrade"],
    ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
    ["Sec-WebSocket-Version", "13"],
    ["Sec-WebSocket-Protocol", "chat"],
  );
  expect(isWebSocketHandshake("GET", inbound)).toBe(true);
  const out = upstreamHeaders(inbound, CLIENT, false, true, "t:1");
  expect(fixed(out.lines)).toEqual([
    ["Host", "app.test"],
    ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
    ["Sec-WebSocket-Version", "13"],
    ["Sec-WebSocket-Protocol", "chat"],
    ["Connection", "Upgrade"],
    ["Upgrade", "websocket"],
    ["X-Forwarded-For", "203.0.113.7"],
    ["X-Forwarded-Proto", "http"],
    ["X-Forwarded-Host", "app.test"],
  ]);
  // The same request not treated as a handshake loses its Upgrade.
  expect(fixed(upstreamHeaders(inbound, CLIENT, false, false, "t:1").lines).map(([n]) => n)).not.toContain("Upgrade");
});

test("no Host (HTTP/1.0) or an empty one: the target's address is the Host", () => {
  for (const inbound of [fields(["Accept", "*/*"]), fields(["Host", ""], ["Accept", "*/*"])]) {
    const out = upstreamHeaders(inbound, CLIENT, false, false, "web-1:3000");
    expect(fixed(out.lines)).toEqual([
      ["Accept", "*/*"],
      ["Host", "web-1:3000"],
      ["X-Forwarded-For", "203.0.113.7"],
      ["X-Forwarded-Proto", "http"],
      ["X-Forwarded-Host", ""],
    ]);
  }
});

test("X-Request-ID and X-Request-Start are kept when given, replaced when empty", () => {
  const kept = upstreamHeaders(fields(["Host", "h"], ["X-Request-ID", "abc-123"], ["X-Request-Start", "t=1700000000000"]), CLIENT, false, false, "t:1");
  expect(kept.requestId).toBe("abc-123");
  const keptLines = lines(kept.lines);
  expect(keptLines.filter(([n]) => n.toLowerCase() === "x-request-id")).toEqual([["X-Request-ID", "abc-123"]]);
  expect(keptLines.filter(([n]) => n.toLowerCase() === "x-request-start")).toEqual([["X-Request-Start", "t=1700000000000"]]);
  const empty = upstreamHeaders(fields(["Host", "h"], ["X-Request-ID", "  "], ["X-Request-Start", ""]), CLIENT, false, false, "t:1");
  expect(empty.requestId).toMatch(UUID);
  const emptyLines = lines(empty.lines);
  expect(emptyLines.filter(([n]) => n.toLowerCase() === "x-request-id")).toEqual([["X-Request-ID", empty.requestId]]);
  expect(emptyLines.filter(([n]) => n.toLowerCase() === "x-request-start")).toHaveLength(1);
  expect(emptyLines.find(([n]) => n === "X-Request-Start")![1]).toMatch(/^t=\d+$/);
});

test("isWebSocketHandshake needs GET, Upgrade: websocket, Connection: upgrade and a key", () => {
  const key: [string, string] = ["Sec-WebSocket-Key", "k"];
  expect(isWebSocketHandshake("GET", fields(["Upgrade", "WebSocket"], ["Connection", "Upgrade"], key))).toBe(true);
  expect(isWebSocketHandshake("POST", fields(["Upgrade", "websocket"], ["Connection", "upgrade"], key))).toBe(false);
  expect(isWebSocketHandshake("GET", fields(["Upgrade", "websocket"], ["Connection", "upgrade"]))).toBe(false);
  expect(isWebSocketHandshake("GET", fields(["Upgrade", "websocket"], ["Connection", "upgrade"], ["Sec-WebSocket-Key", ""]))).toBe(false);
  expect(isWebSocketHandshake("GET", fields(["Upgrade", "h2c"], ["Connection", "upgrade"], key))).toBe(false);
  expect(isWebSocketHandshake("GET", fields(["Upgrade", "websocket"], ["Connection", "keep-alive"], key))).toBe(false);
  expect(isWebSocketHandshake("GET", fields(["Connection", "upgrade"], key))).toBe(false);
});

test("stripHopByHop removes hop-by-hop fields and those Connection names from a response, except Content-Length", () => {
  const response = fields(
    ["Content-Type", "text/plain"],
    ["Connection", "close, X-Internal, Content-Length"],
    ["Keep-Alive", "timeout=5"],
    ["Transfer-Encoding", "chunked"],
    ["X-Internal", "1"],
    ["Content-Length", "3"],
    ["Upgrade", "h2c"],
    ["Set-Cookie", "a=1"],
  );
  const same = stripHopByHop(response);
  expect(same).toBe(response);
  expect(response.serialize()).toBe("Content-Type: text/plain\r\nContent-Length: 3\r\nSet-Cookie: a=1\r\n");
});

test("stripHopByHop for a 101 keeps Upgrade and says Connection: Upgrade", () => {
  const response = fields(["Upgrade", "websocket"], ["Connection", "upgrade, x-drop"], ["X-Drop", "1"], ["Sec-WebSocket-Accept", "abc"]);
  stripHopByHop(response, true);
  expect(response.serialize()).toBe("Upgrade: websocket\r\nSec-WebSocket-Accept: abc\r\nConnection: Upgrade\r\n");
});

test("normalizeClientIp unwraps IPv4-mapped IPv6 addresses only", () => {
  expect(normalizeClientIp("::ffff:192.0.2.1")).toBe("192.0.2.1");
  expect(normalizeClientIp("192.0.2.1")).toBe("192.0.2.1");
  expect(normalizeClientIp("::1")).toBe("::1");
  expect(normalizeClientIp("::ffff:c000:201")).toBe("::ffff:c000:201");
  expect(normalizeClientIp("2001:db8::1")).toBe("2001:db8::1");
  expect(normalizeClientIp(undefined)).toBe("");
  expect(normalizeClientIp("")).toBe("");
});

test("with forwardHeaders every inbound X-Forwarded-For line is extended, not only the first (RFC 9110 §5.3)", () => {
  const f = new Fields();
  f.append("Host", "h");
  f.append("X-Forwarded-For", "198.51.100.1");
  f.append("X-Forwarded-For", "10.0.0.2");
  const out = upstreamHeaders(f, { ip: "203.0.113.7", scheme: "http" }, true, false, "t:1");
  expect(out.lines).toContain("X-Forwarded-For: 198.51.100.1, 10.0.0.2, 203.0.113.7\r\n");
  expect(out.clientAddr).toBe("198.51.100.1");
});

test("X-Parachute-Target names the target the request was routed to; a client's own value is dropped", () => {
  for (const forwardHeaders of [false, true]) {
    const out = upstreamHeaders(fields(["Host", "h"], ["X-Parachute-Target", "evil:1"]), CLIENT, forwardHeaders, false, "web-2:3000");
    expect(lines(out.lines).filter(([name]) => name.toLowerCase() === "x-parachute-target")).toEqual([["X-Parachute-Target", "web-2:3000"]]);
  }
});

test("a --client-ip-header address stands in for the inbound X-Forwarded-For (kamal-proxy's TestService_ClientIPHeaderRewritesXForwardedFor)", () => {
  const inbound = fields(["Host", "h"], ["True-Client-IP", "203.0.113.9"], ["X-Forwarded-For", "6.6.6.6"]);
  const client: ClientInfo = { ip: "10.0.0.5", scheme: "http", headerIp: "203.0.113.9" };
  const trusted = upstreamHeaders(inbound, client, true, false, "t:1");
  expect(trusted.lines).toContain("X-Forwarded-For: 203.0.113.9, 10.0.0.5\r\n");
  // The named header itself reaches the app unchanged.
  expect(trusted.lines).toContain("True-Client-IP: 203.0.113.9\r\n");
  expect(trusted.clientAddr).toBe("203.0.113.9");
  // Without --forward-headers no inbound X-Forwarded-For is trusted, this one neither; the log still names it.
  const untrusted = upstreamHeaders(inbound, client, false, false, "t:1");
  expect(untrusted.lines).toContain("X-Forwarded-For: 10.0.0.5\r\n");
  expect(untrusted.clientAddr).toBe("203.0.113.9");
});
