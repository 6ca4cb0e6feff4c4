// Header rules of SPEC §7: hop-by-hop headers never cross the proxy (RFC 9110
// §7.6.1), and the X-Forwarded-* / X-Request-* headers the app relies on.

import { validHostHeader } from "../routing/router.ts";

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
];

/** Removes hop-by-hop headers, including every header named in `Connection`. */
export function stripHopByHop(headers: Headers): void {
  const connection = headers.get("connection");
  if (connection) {
    for (const name of connection.split(",")) {
      const trimmed = name.trim();
      if (trimmed) headers.delete(trimmed);
    }
  }
  for (const name of HOP_BY_HOP) headers.delete(name);
}

/**
 * A WebSocket handshake (RFC 6455 §4.2.1): a GET with `Upgrade: websocket`,
 * `Connection: upgrade` and a key. Anything less is an ordinary request whose
 * Upgrade header is hop-by-hop and dropped.
 */
export function isWebSocketHandshake(method: string | undefined, header: (name: string) => string | null | undefined): boolean {
  if (method !== "GET" || header("upgrade")?.toLowerCase() !== "websocket") return false;
  const connection = header("connection")?.toLowerCase() ?? "";
  return connection.split(",").some((token) => token.trim() === "upgrade") && Boolean(header("sec-websocket-key"));
}

export interface ClientInfo {
  /** The peer's address, IPv4-mapped IPv6 unwrapped. */
  ip: string;
  scheme: "http" | "https";
}

/**
 * Builds the upstream request headers. With `forwardHeaders` the inbound
 * X-Forwarded-* values are trusted (another proxy is in front) and extended;
 * without it they are replaced, so a client cannot spoof its address.
 */
export function upstreamRequestHeaders(inbound: Headers, client: ClientInfo, forwardHeaders: boolean): Headers {
  const headers = new Headers(inbound);
  stripHopByHop(headers);
  // The listener has already answered `100 Continue` to the client.
  headers.delete("expect");
  if (!forwardHeaders) {
    for (const name of [...inbound.keys()]) if (name.startsWith("x-forwarded-")) headers.delete(name);
  }
  const host = inbound.get("host") ?? "";
  const priorFor = forwardHeaders ? inbound.get("x-forwarded-for") : null;
  headers.set("x-forwarded-for", priorFor ? `${priorFor}, ${client.ip}` : client.ip);
  headers.set("x-forwarded-proto", (forwardHeaders && inbound.get("x-forwarded-proto")) || client.scheme);
  headers.set("x-forwarded-host", (forwardHeaders && inbound.get("x-forwarded-host")) || host);
  // An empty value is as good as none: the app and the log need a real id.
  if (!headers.get("x-request-id")?.trim()) headers.set("x-request-id", crypto.randomUUID());
  if (!headers.get("x-request-start")?.trim()) headers.set("x-request-start", `t=${Date.now()}`);
  return headers;
}

/** `::ffff:1.2.3.4` (dual-stack listener) → `1.2.3.4`. */
export function normalizeClientIp(address: string | undefined): string {
  if (!address) return "";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/**
 * Requests no service should see, answered by the proxy itself: a malformed
 * Host header is a 400 (RFC 9112 §3.2, as nginx does), and CONNECT, which
 * asks a forward proxy for a tunnel, is a 405.
 */
export function refuseRequest(req: Request): { status: number; error: string } | undefined {
  const host = req.headers.get("host");
  if (host !== null && !validHostHeader(host)) return { status: 400, error: "invalid Host header" };
  if (req.method === "CONNECT") return { status: 405, error: "CONNECT is not supported" };
  return undefined;
}
