// The request log (SPEC §10): one JSON line per proxied request, plus the
// request counters and durations of the metrics. Shared by the HTTP proxy and
// the WebSocket relay so both log the same fields.
import type { RequestContext } from "../server/node-listener.ts";
import { log } from "../log.ts";
import { metrics } from "../metrics.ts";
import { normalizeHost } from "../routing/router.ts";
import type { Outcome } from "./forward.ts";
import { normalizeClientIp } from "./headers.ts";

export type Scheme = "http" | "https";

/** For connections relayed by the TLS front: the real client address behind a loopback port. */
export type PeerAddress = (port: number) => string | undefined;

/**
 * Splits `http://host/p/a?q` into the raw path and the raw query (with its
 * `?`), without URL re-encoding. Without a usable Host header Bun.serve (the
 * WebSocket relay's server) gives the bare request target (`/p/a?q`) instead.
 */
export function splitTarget(url: string): { path: string; query: string } {
  const start = url.startsWith("/") ? 0 : url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return { path: "/", query: "" };
  const q = url.indexOf("?", start);
  return q === -1 ? { path: url.slice(start), query: "" } : { path: url.slice(start, q), query: url.slice(q) };
}

export function stripPrefix(path: string, prefix: string): string {
  if (prefix === "/") return path;
  const rest = path.slice(prefix.length);
  return rest === "" ? "/" : rest;
}

export interface RequestLog {
  req: Request;
  service: string;
  target: string;
  host: string;
  path: string;
  query: string;
  requestId: string;
  clientAddr: string;
  remoteAddr: string;
  scheme: Scheme;
  /** HTTP version as the client spoke it. */
  proto: string;
  started: number;
  logRequestHeaders?: string[];
}

export function logRequest(entry: RequestLog, outcome: Outcome, logResponseHeaders?: string[]) {
  const { req } = entry;
  const seconds = (performance.now() - entry.started) / 1000;
  metrics.recordRequest(entry.service, req.method, outcome.status, seconds);
  const fields: Record<string, unknown> = {
    service: entry.service,
    target: entry.target,
    host: entry.host,
    method: req.method,
    path: entry.path,
    query: entry.query.slice(1),
    status: outcome.status,
    duration_ms: Math.round(seconds * 100_000) / 100,
    request_id: entry.requestId,
    client_addr: entry.clientAddr,
    remote_addr: entry.remoteAddr,
    user_agent: req.headers.get("user-agent") ?? "",
    req_content_length: Number(req.headers.get("content-length") ?? 0),
    resp_content_length: outcome.bytes,
    proto: entry.proto,
    scheme: entry.scheme,
  };
  if (outcome.error) fields.error = outcome.error;
  for (const name of entry.logRequestHeaders ?? []) fields[`req_${name.replaceAll("-", "_")}`] = req.headers.get(name) ?? "";
  for (const name of logResponseHeaders ?? []) fields[`resp_${name.replaceAll("-", "_")}`] = outcome.headers?.get(name) ?? "";
  log.info("Request", fields);
}

/** Starts the log entry of a request; must run before any await (requestIP is null once the client has gone). */
export function startRequestLog(req: Request, server: RequestContext, scheme: Scheme, peerAddress?: PeerAddress): RequestLog {
  const peer = server.requestIP(req);
  const remoteAddr = (peer && peerAddress?.(peer.port)) ?? normalizeClientIp(peer?.address);
  const { path, query } = splitTarget(req.url);
  return {
    req,
    service: "",
    target: "",
    host: normalizeHost(req.headers.get("host")),
    path,
    query,
    requestId: req.headers.get("x-request-id") ?? "",
    clientAddr: remoteAddr,
    remoteAddr,
    scheme,
    proto: server.httpVersion?.(req) ?? "HTTP/1.1",
    started: performance.now(),
  };
}
