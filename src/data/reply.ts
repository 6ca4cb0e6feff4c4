// What the request pipeline answers, for the listener to write: the proxy's
// own pages and redirects (a body in memory), an app's response (its body
// streamed from the target), or a switch to a WebSocket tunnel.
import { Fields } from "../http/fields.ts";
import type { BodySource } from "./body.ts";
import type { SocketTransport } from "./transport.ts";
import type { WebSocketTunnel } from "./websocket-tunnel.ts";

export interface SentOutcome {
  /** Body bytes delivered to the client. */
  bytes: number;
  /** Why the reply ended early, if it did. */
  error?: string;
}

export interface Upgrade {
  /** The target's connection, and what the target sent after its 101 head. */
  transport: SocketTransport;
  initial: Uint8Array | undefined;
  /** The listener has joined the two connections. */
  opened(tunnel: WebSocketTunnel): void;
}

export interface Reply {
  status: number;
  /** The reason phrase; "" for the standard one. */
  reason: string;
  headers: Fields;
  body: Uint8Array | BodySource | null;
  /** The app's chunked body, which an HTTP/1.1 client can be sent as it is. */
  chunked?: boolean;
  upgrade?: Upgrade;
  /** Called once, when the reply has been written (or has failed). */
  done(outcome: SentOutcome): void;
}

const encoder = new TextEncoder();

/** A complete answer produced by the proxy itself. */
export function answer(status: number, headers: [string, string][], body: string | Uint8Array, done: Reply["done"]): Reply {
  const fields = new Fields();
  for (const [name, value] of headers) fields.append(name, value);
  return { status, reason: "", headers: fields, body: typeof body === "string" ? encoder.encode(body) : body, done };
}
