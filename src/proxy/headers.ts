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

/**
 * Headers the proxy writes itself on the way to the target: the body's
 * framing (from the body as it was read, never from the client's lines), the
 * forwarded-for trio, and `Expect`, which it answers itself.
 */
const REPLACED = new Set(["content-length", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-parachute-target", "expect"]);

/**
 * Fields a `Connection` header may not remove (RFC 9110 §7.6.1): naming
 * Content-Length or Host there would otherwise strip the framing of a body
 * that is still sent (a request smuggled into the next one on a pooled
 * connection) or the name of the site.
 */
const NOT_CONNECTION_OPTIONS = new Set(["content-length", "transfer-encoding", "host"]);

/** The lower-case names a `Connection` header asks to drop, minus those it may not. */
function connectionOptions(fields: Fields): readonly string[] | undefined {
  if (!fields.has("connection")) return undefined;
  return fields.tokens("connection").filter((name) => !NOT_CONNECTION_OPTIONS.has(name));
}

/**
 * A WebSocket handshake (RFC 6455 §4.2.1): a GET with `Upgrade: websocket`,
 * `Connection: upgrade` and a key. Anything less is an ordinary request whose
 * Upgrade header is hop-by-hop and dropped.
 */
export function isWebSocketHandshake(method: string, fields: Fields): boolean {
  if (method !== "GET" || fields.get("upgrade")?.toLowerCase() !== "websocket") return false;
  return fields.tokens("connection").includes("upgrade") && Boolean(fields.get("sec-websocket-key"));
}

/**
 * Removes hop-by-hop fields, and every field named in `Connection`, from a
 * target's response (in place). A 101 keeps its `Upgrade` and says
 * `Connection: Upgrade`.
 */
export function stripHopByHop(fields: Fields, upgrade = false): Fields {
  fields.deleteAll(HOP_BY_HOP, connectionOptions(fields), upgrade ? "upgrade" : undefined);
  if (upgrade) fields.set("Connection", "Upgrade");
  return fields;
}

const NO_TOKENS: string[] = [];

export interface ClientInfo {
  /** The peer's address, IPv4-mapped IPv6 unwrapped. */
  ip: string;
  scheme: "http" | "https";
  /**
   * The client address a `--client-ip-header` gave (validated): it replaces
   * the inbound X-Forwarded-For, as if the client had sent that (kamal-proxy
   * does the same), and it is the logged client address either way.
   */
  headerIp?: string;
}

/** The header lines for the target, and what the request log needs of them. */
export interface UpstreamHeaders {
  /** Field lines, each ending in CRLF; the blank line is not included. */
  lines: string;
  requestId: string;
  /** The original client: the first X-Forwarded-For entry. */
  clientAddr: string;
}

/**
 * The header lines for the target, written straight from the client's
 * fields: hop-by-hop fields dropped, X-Forwarded-* and X-Request-* added.
 * With `forwardHeaders` the inbound X-Forwarded-* values are trusted
 * (another proxy is in front) and extended; without it they are replaced, so
 * a client cannot spoof its address. A trusted `client.headerIp` stands in
 * for the inbound X-Forwarded-For. A WebSocket handshake keeps its
 * `Upgrade` and `Connection`.
 */
export function upstreamHeaders(inbound: Fields, client: ClientInfo, forwardHeaders: boolean, websocket: boolean, targetAddress: string): UpstreamHeaders {
  const named = connectionOptions(inbound) ?? NO_TOKENS;
  let lines = "";
  let host = "";
  let requestId = "";
  let requestStart = false;
  for (let i = 0; i < inbound.size; i++) {
    const key = inbound.keyAt(i);
    const value = inbound.valueAt(i);
    if (HOP_BY_HOP.has(key) || REPLACED.has(key) || named.includes(key)) continue;
    if (key.charCodeAt(0) === 120 /* x */) {
      if (key.startsWith("x-forwarded-") && !forwardHeaders) continue;
      // An empty value is as good as none: the app and the log need a real id.
      if (key === "x-request-id" && !(requestId = value.trim())) continue;
      if (key === "x-request-start" && !(requestStart = value.trim() !== "")) continue;
    }
    if (key === "host") {
      // HTTP/1.1 needs a Host: without one from the client (HTTP/1.0, or empty), the target's address.
      if (!value) continue;
      host = value;
    }
    lines += `${inbound.nameAt(i)}: ${value}\r\n`;
  }
  if (!host) lines += `Host: ${targetAddress}\r\n`;
  if (websocket) lines += "Connection: Upgrade\r\nUpgrade: websocket\r\n";
  // Several X-Forwarded-For lines are one comma-separated list (RFC 9110 §5.3).
  const priorFor = forwardHeaders ? (client.headerIp ?? inbound.getAll("x-forwarded-for").join(", ")) : "";
  const forwardedFor = priorFor ? `${priorFor}, ${client.ip}` : client.ip;
  const proto = (forwardHeaders && inbound.get("x-forwarded-proto")) || client.scheme;
  const forwardedHost = (forwardHeaders && inbound.get("x-forwarded-host")) || host;
  lines += `X-Forwarded-For: ${forwardedFor}\r\nX-Forwarded-Proto: ${proto}\r\nX-Forwarded-Host: ${forwardedHost}\r\n`;
  // Which instance the request was routed to, for the app (never the client's own value).
  lines += `X-Parachute-Target: ${targetAddress}\r\n`;
  if (!requestId) {
    requestId = crypto.randomUUID();
    lines += `X-Request-ID: ${requestId}\r\n`;
  }
  if (!requestStart) lines += `X-Request-Start: t=${Date.now()}\r\n`;
  if (client.headerIp) return { lines, requestId, clientAddr: client.headerIp };
  const comma = forwardedFor.indexOf(",");
  return { lines, requestId, clientAddr: comma === -1 ? forwardedFor : forwardedFor.slice(0, comma).trim() };
}

/** `::ffff:1.2.3.4` (dual-stack listener) → `1.2.3.4`. */
export function normalizeClientIp(address: string | undefined): string {
  if (!address) return "";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
