// WebSocket relay (SPEC §7, BUN-NOTES §2). Upgrades are handled in the raw
// Bun.serve fetch before Hono: Hono's helper can neither echo the upstream's
// subprotocol nor apply backpressure. The upstream connection is opened first,
// so a dead target is a 502 before the client is upgraded.
import type { Server, ServerWebSocket, WebSocketHandler } from "bun";
import type { IncomingMessage } from "node:http";
import { WebSocket } from "ws";
import { log } from "../log.ts";
import { errorPage } from "../proxy/error-pages.ts";
import { isWebSocketHandshake, refuseRequest, stripHopByHop, upstreamRequestHeaders } from "../proxy/headers.ts";
import { responseFrom } from "../proxy/verbatim-fetch.ts";
import { logRequest, startRequestLog, stripPrefix, type PeerAddress, type Scheme } from "../proxy/request-log.ts";
import type { Registry } from "../service/registry.ts";
import { ROLLOUT_COOKIE } from "../service/rollout.ts";
import { parse as parseCookies } from "hono/utils/cookie";

interface Relay {
  upstream: WebSocket;
  /** Upstream messages that arrived before the client socket was open. */
  early: (string | Uint8Array)[];
  finish: () => void;
  controller: AbortController;
  service: string;
  target: string;
}

/** Headers that belong to one handshake and must not be copied to the other. */
const HANDSHAKE = ["sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol", "host"];

/** Above this much unsent data on the upstream, stop reading from the client. */
const UPSTREAM_HIGH_WATER = 4 * 1024 * 1024;
const UPSTREAM_LOW_WATER = 1024 * 1024;

/** Close codes an endpoint may send (RFC 6455 §7.4); 1005/1006 would throw and crash the handler. */
export function safeCloseCode(code: number | undefined): number {
  if (code === undefined) return 1000;
  if (code >= 3000 && code <= 4999) return code;
  if (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) return code;
  return 1000;
}

/** Close reasons are limited to 123 bytes of UTF-8. */
function safeReason(reason: string | undefined): string {
  if (!reason) return "";
  const bytes = new TextEncoder().encode(reason);
  return bytes.length <= 123 ? reason : new TextDecoder().decode(bytes.slice(0, 120));
}

/** A WebSocket handshake (see isWebSocketHandshake); anything else is an ordinary request. */
export function isWebSocketUpgrade(req: Request): boolean {
  return isWebSocketHandshake(req.method, (name) => req.headers.get(name));
}

class HandshakeTimeout extends Error {}

/** The app answered the upgrade with an ordinary response instead of 101. */
class HandshakeRefused extends Error {
  readonly response: Response;
  /** The body size the app declared, for the request log (0 when it streams). */
  readonly bytes: number;
  constructor(res: IncomingMessage) {
    super(`app answered ${res.statusCode} to the upgrade`);
    this.bytes = Number(res.headers["content-length"] ?? 0) || 0;
    this.response = refusal(res);
  }
}

/**
 * The app's refusal as a Response: its status, headers (hop-by-hop removed)
 * and body, streamed as it arrives (the target timeout covers the headers only).
 */
function refusal(res: IncomingMessage): Response {
  const answer = responseFrom(res);
  const headers = new Headers(answer.headers);
  stripHopByHop(headers);
  // Bun.serve sets its own Date and frames the streamed body itself.
  headers.delete("date");
  headers.delete("content-length");
  return new Response(answer.body, { status: answer.status, statusText: answer.statusText, headers });
}

/**
 * Opens the upstream socket; resolves once it is open, rejects on failure or
 * after the target timeout. Bun's `ws` client is used rather than the global
 * WebSocket because it reports a refused handshake in full ("unexpected-response":
 * status, headers and body), so the app's answer reaches the client untouched.
 */
function connectUpstream(url: string, headers: Headers, protocols: string[], timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const upstream = new WebSocket(url, protocols, { headers: Object.fromEntries(headers) });
    const timer = setTimeout(() => {
      reject(new HandshakeTimeout("target timeout"));
      upstream.terminate();
    }, timeoutMs);
    upstream.on("open", () => {
      clearTimeout(timer);
      resolve(upstream);
    });
    upstream.on("unexpected-response", (_request, res) => {
      clearTimeout(timer);
      reject(new HandshakeRefused(res));
    });
    upstream.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** The error page for a failed upstream handshake: 504 for a target timeout, else 502. */
function handshakeFailure(error: unknown): { status: number; reason: string } {
  if (error instanceof HandshakeTimeout) return { status: 504, reason: "target timeout" };
  return { status: 502, reason: `target failed: ${(error as Error)?.message || "connection failed"}` };
}

export async function upgradeWebSocket(
  req: Request,
  server: Server<Relay>,
  registry: Registry,
  scheme: Scheme,
  peerAddress?: PeerAddress,
): Promise<Response | undefined> {
  const entry = startRequestLog(req, server as Server<unknown>, scheme, peerAddress);
  const { host, path, query, remoteAddr } = entry;
  const reject = (status: number, error: string, options: Parameters<typeof errorPage>[1] = {}) => {
    const page = errorPage(status, options);
    logRequest(entry, { status, bytes: page.bytes, error });
    return page.response;
  };
  const refused = refuseRequest(req);
  if (refused) return reject(refused.status, refused.error);
  const route = registry.router.match(host, path);
  if (!route) return reject(404, "no service matches");
  const service = route.service;
  entry.service = service.name;
  entry.logRequestHeaders = service.options.logRequestHeaders;
  const pages = registry.errorPages(service);
  if (scheme === "https" && !service.options.tls) return reject(503, "service is not served over HTTPS", { pages });
  if (service.pause.mode !== "running") {
    const outcome = await service.pause.wait();
    if (outcome === "stopped") return reject(503, "service stopped", { pages, message: service.pause.message });
    if (outcome === "timeout") return reject(504, "paused longer than max-pause", { pages });
  }
  // A WebSocket is a long write-capable session: it goes to the writers.
  const cookieHeader = req.headers.get("cookie");
  const rolloutValue = cookieHeader && service.rolloutTargets ? parseCookies(cookieHeader)[ROLLOUT_COOKIE] : undefined;
  const { target } = service.pick(false, rolloutValue, true);
  if (!target) return reject(503, "no healthy target", { pages });
  entry.target = target.address;

  const headers = upstreamRequestHeaders(req.headers, { ip: remoteAddr, scheme }, service.options.forwardHeaders);
  entry.requestId = headers.get("x-request-id")!;
  entry.clientAddr = headers.get("x-forwarded-for")!.split(",")[0]!.trim();
  for (const name of HANDSHAKE) headers.delete(name);
  headers.set("host", req.headers.get("host") ?? "");
  const protocols = (req.headers.get("sec-websocket-protocol") ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  const pathAndQuery = (service.options.stripPathPrefix ? stripPrefix(path, route.prefix) : path) + query;

  const controller = new AbortController();
  const finish = target.begin(controller);
  let upstream: WebSocket;
  try {
    upstream = await connectUpstream(`ws://${target.address}${pathAndQuery}`, headers, protocols, service.options.targetTimeoutMs);
  } catch (error) {
    finish();
    if (error instanceof HandshakeRefused) {
      // The app's own answer: passed through untouched, never an error page.
      logRequest(entry, { status: error.response.status, bytes: error.bytes, error: error.message });
      return error.response;
    }
    const failure = handshakeFailure(error);
    return reject(failure.status, failure.reason, { pages });
  }

  const relay: Relay = { upstream, early: [], finish, controller, service: service.name, target: target.address };
  // Buffer what the upstream says until the client socket is open.
  upstream.on("message", (data, isBinary) => relay.early.push(isBinary ? data : data.toString("utf8")));
  upstream.on("error", () => {}); // a failure after open is followed by "close", handled there
  // Bun would echo the client's *first* offered protocol; the upstream's choice is the right one.
  const upgraded = server.upgrade(req, {
    data: relay,
    headers: upstream.protocol ? { "sec-websocket-protocol": upstream.protocol } : {},
  });
  if (!upgraded) {
    upstream.close();
    finish();
    return reject(400, "WebSocket upgrade failed");
  }
  logRequest(entry, { status: 101, bytes: 0 });
  return undefined;
}

/** Client sockets being relayed, for closeWebSockets(). */
const relayed = new Set<ServerWebSocket<Relay>>();

/** Shutdown: every relayed WebSocket is closed with 1001 (going away) on both sides. */
export function closeWebSockets() {
  for (const ws of relayed) {
    try {
      ws.data.upstream.close(1001, "server shutting down");
    } catch {}
    ws.close(1001, "server shutting down");
  }
}

export const websocketHandler: WebSocketHandler<Relay> = {
  // Large enough that a burst read before the upstream is paused is queued, not dropped.
  backpressureLimit: 64 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  idleTimeout: 0,
  open(ws: ServerWebSocket<Relay>) {
    relayed.add(ws);
    const relay = ws.data;
    const { upstream } = relay;
    const deliver = (data: string | Uint8Array) => {
      // -1: queued but the client is slow. Stop reading from the upstream
      // until `drain`, so nothing piles up and nothing is dropped.
      if (ws.send(data) === -1 && !upstream.isPaused) upstream.pause();
    };
    for (const data of relay.early) deliver(data);
    relay.early = [];
    upstream.removeAllListeners("message");
    upstream.on("message", (data, isBinary) => deliver(isBinary ? data : data.toString("utf8")));
    upstream.on("close", (code, reason) => {
      relay.finish();
      try {
        ws.close(safeCloseCode(code), safeReason(reason.toString("utf8")));
      } catch {
        ws.terminate();
      }
    });
    if (upstream.readyState !== WebSocket.OPEN) ws.close(1011, "upstream closed");
    // Draining past its deadline closes the connection (the target is going away).
    relay.controller.signal.addEventListener("abort", () => {
      try {
        upstream.close(1001, "target drained");
      } catch {}
      ws.close(1001, "target drained");
    });
  },
  message(ws, message) {
    const { upstream } = ws.data;
    if (upstream.readyState !== WebSocket.OPEN) return;
    upstream.send(message);
    if (upstream.bufferedAmount > UPSTREAM_HIGH_WATER && !ws.isPaused) {
      ws.pause();
      const poll = setInterval(() => {
        if (upstream.readyState !== WebSocket.OPEN || upstream.bufferedAmount < UPSTREAM_LOW_WATER) {
          clearInterval(poll);
          ws.resume();
        }
      }, 5);
    }
  },
  drain(ws) {
    const { upstream } = ws.data;
    if (upstream.isPaused) upstream.resume();
  },
  close(ws, code, reason) {
    relayed.delete(ws);
    const relay = ws.data;
    relay.finish();
    try {
      if (relay.upstream.readyState === WebSocket.OPEN || relay.upstream.readyState === WebSocket.CONNECTING) {
        relay.upstream.close(safeCloseCode(code), safeReason(reason));
      }
    } catch {
      relay.upstream.terminate?.();
    }
  },
};
