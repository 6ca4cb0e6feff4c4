// The request log: one JSON line per proxied request, plus the request
// counters and durations of the metrics. HTTP requests and WebSocket upgrades
// log the same fields (README, "Logs and metrics").
import type { Fields } from "../http/fields.ts";
import { log } from "../log.ts";
import { metrics } from "../metrics.ts";
import { normalizeHost } from "../routing/router.ts";
import type { ProxyRequest } from "../data/request.ts";

export interface Outcome {
  /** Status sent to the client (for proxy errors, the error status; 499 when the client went away first). */
  status: number;
  /** Bytes of response body sent. */
  bytes: number;
  /** Set when the proxy produced the status itself, or the exchange ended early. */
  error?: string;
  /** The response headers sent to the client, when the target answered. */
  headers?: Fields;
}

export interface RequestLog {
  req: ProxyRequest;
  service: string;
  target: string;
  host: string;
  requestId: string;
  clientAddr: string;
  logRequestHeaders?: string[];
  logResponseHeaders?: string[];
  /** Logged but not counted in the request metrics (`--exclude-metrics-path`). */
  uncounted?: boolean;
}

export function startRequestLog(req: ProxyRequest): RequestLog {
  return {
    req,
    service: "",
    target: "",
    host: normalizeHost(req.hostHeader),
    requestId: req.headers.get("x-request-id") ?? "",
    clientAddr: req.remoteAddr,
  };
}

/** Most values need no escaping; those are quoted as they are, the rest go through JSON.stringify. */
const PLAIN = /^[^"\\\x00-\x1f\u2028\u2029]*$/;
function json(text: string): string {
  return PLAIN.test(text) ? `"${text}"` : JSON.stringify(text);
}

/**
 * Logs the request's line and counts it in the metrics. The line is written
 * as text rather than stringified from an object: it is the one log line of
 * every request, and this halves its cost. Values a client controls are
 * escaped; the rest (service names, addresses, methods, numbers) cannot hold
 * a quote.
 */
export function logRequest(entry: RequestLog, outcome: Outcome) {
  const { req } = entry;
  const seconds = (performance.now() - req.started) / 1000;
  if (!entry.uncounted) metrics.recordRequest(entry.service, req.method, outcome.status, seconds);
  let line =
    `"service":"${entry.service}","target":"${entry.target}","host":${json(entry.host)},"method":"${req.method}",` +
    `"path":${json(req.path ?? "")},"query":${json(req.query.slice(1))},"status":${outcome.status},` +
    `"duration_ms":${Math.round(seconds * 100_000) / 100},"request_id":${json(entry.requestId)},` +
    `"client_addr":${json(entry.clientAddr)},"remote_addr":"${req.remoteAddr}","user_agent":${json(req.headers.get("user-agent") ?? "")},` +
    `"req_content_length":${Number(req.headers.get("content-length") ?? 0) || 0},"resp_content_length":${outcome.bytes},` +
    `"proto":"${req.proto}","scheme":"${req.scheme}"`;
  if (outcome.error) line += `,"error":${json(outcome.error)}`;
  for (const name of entry.logRequestHeaders ?? []) line += `,"req_${name.replaceAll("-", "_")}":${json(req.headers.get(name) ?? "")}`;
  for (const name of entry.logResponseHeaders ?? []) line += `,"resp_${name.replaceAll("-", "_")}":${json(outcome.headers?.get(name) ?? "")}`;
  log.infoLine("Request", line);
}
