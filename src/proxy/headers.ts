// Header rules of forwarding: hop-by-hop headers never cross the proxy (RFC
// 9110 §7.6.1), and the X-Forwarded-* / X-Request-* headers the app relies on.
import { Fields } from "../http/fields.ts";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authenticate",
  "proxy-authorization",
]);

/** Headers the proxy writes itself on the way to the target, or answers itself (`Expect`). */
const REPLACED = new Set(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "expect"]);

/**
 * A WebSocket handshake (RFC 6455 §4.2.1): a GET with `Upgrade: websocket`,
 * `Connection: upgrade` and a key. Anything less is an ordinary request whose
 * Upgrade header is hop-by-hop and dropped.
 */
export function isWebSocketHandshake(method: string, fields: Fields): boolean {
  if (method !== "GET" || fields.get("upgrade")?.toLowerCase() !== "websocket") return false;
  return fields.tokens("connection").includes("upgrade") && Boolean(fields.get("sec-websocket-key"));
}

/** The fields minus hop-by-hop ones, including every field named in `Connection`. */
export function withoutHopByHop(fields: Fields, keepUpgrade = false): Fields {
  const named = fields.tokens("connection");
  const out = new Fields();
  fields.forEach((value, name, key) => {
    if (HOP_BY_HOP.has(key) && !(keepUpgrade && (key === "upgrade" || key === "connection"))) return;
    if (named.length && named.includes(key) && !(keepUpgrade && key === "upgrade")) return;
    out.append(name, value, key);
  });
  if (keepUpgrade) {
    out.set("connection", "Upgrade");
  }
  return out;
}

export interface ClientInfo {
  /** The peer's address, IPv4-mapped IPv6 unwrapped. */
  ip: string;
  scheme: "http" | "https";
}

/**
 * Builds the headers for the target. With `forwardHeaders` the inbound
 * X-Forwarded-* values are trusted (another proxy is in front) and extended;
 * without it they are replaced, so a client cannot spoof its address.
 * A WebSocket handshake keeps its `Upgrade` and `Connection`.
 */
export function upstreamFields(inbound: Fields, client: ClientInfo, forwardHeaders: boolean, websocket: boolean, targetAddress: string): Fields {
  const named = inbound.tokens("connection");
  const out = new Fields();
  inbound.forEach((value, name, key) => {
    if (HOP_BY_HOP.has(key) || REPLACED.has(key) || (named.length && named.includes(key))) return;
    if (!forwardHeaders && key.startsWith("x-forwarded-")) return;
    out.append(name, value, key);
  });
  // HTTP/1.1 needs a Host: without one from the client (HTTP/1.0, or empty), the target's address.
  if (!out.get("host")) out.set("Host", targetAddress);
  if (websocket) {
    out.append("Connection", "Upgrade", "connection");
    out.append("Upgrade", "websocket", "upgrade");
  }
  const priorFor = forwardHeaders ? inbound.get("x-forwarded-for") : undefined;
  out.append("X-Forwarded-For", priorFor ? `${priorFor}, ${client.ip}` : client.ip, "x-forwarded-for");
  out.append("X-Forwarded-Proto", (forwardHeaders && inbound.get("x-forwarded-proto")) || client.scheme, "x-forwarded-proto");
  out.append("X-Forwarded-Host", (forwardHeaders && inbound.get("x-forwarded-host")) || (inbound.get("host") ?? ""), "x-forwarded-host");
  // An empty value is as good as none: the app and the log need a real id.
  if (!out.get("x-request-id")?.trim()) out.set("X-Request-ID", crypto.randomUUID());
  if (!out.get("x-request-start")?.trim()) out.set("X-Request-Start", `t=${Date.now()}`);
  return out;
}

/** `::ffff:1.2.3.4` (dual-stack listener) → `1.2.3.4`. */
export function normalizeClientIp(address: string | undefined): string {
  if (!address) return "";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
