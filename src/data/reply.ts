// What the request pipeline answers, for the listener to write: the proxy's
// own pages and redirects (a body in memory), an app's response (its body
// streamed from the target), or a switch to a WebSocket tunnel.
import { Fields } from "../http/fields.ts";
import { logRequest, type RequestLog } from "../proxy/request-log.ts";
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
  /** The reason phrase as the app sent it (even empty); undefined for the standard one. */
  reason?: string;
  headers: Fields;
  body: Uint8Array | BodySource | null;
  /** The app's chunked body, which an HTTP/1.1 client can be sent as it is. */
  chunked?: boolean;
  upgrade?: Upgrade;
  /** Called once, when the reply has been written (or has failed). */
  done(outcome: SentOutcome): void;
}

/** Where a listener takes the reply to a request it handed to the pipeline. */
export interface Responder {
  respond(reply: Reply): void;
}

const encoder = new TextEncoder();

/** A complete answer produced by the proxy itself, logged (when `entry` is given) once it is sent. */
export class Answer implements Reply {
  readonly headers = new Fields();
  readonly body: Uint8Array;

  constructor(
    readonly status: number,
    headers: readonly (readonly [string, string])[],
    body: string | Uint8Array,
    private readonly entry?: RequestLog,
    private readonly error?: string,
  ) {
    for (const [name, value] of headers) this.headers.append(name, value);
    this.body = typeof body === "string" ? encoder.encode(body) : body;
  }

  done(outcome: SentOutcome) {
    if (this.entry) logRequest(this.entry, { status: this.status, bytes: outcome.bytes, error: this.error ?? outcome.error });
  }
}
