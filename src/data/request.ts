// What the request pipeline sees of a request, whichever listener it came
// from: the HTTP/1 listener builds it from the parsed head, the HTTP/2 one
// from Bun.serve's web Request.
import type { Fields } from "../http/fields.ts";
import type { BodySource } from "./body.ts";

export type Scheme = "http" | "https";

export interface ProxyRequest {
  method: string;
  /** The path as sent, `.`/`..` resolved; undefined when the target cannot be routed (`*`, an authority). */
  path: string | undefined;
  /** The raw query with its `?`, or "". */
  query: string;
  /** The Host header as received (with its port), "" when there is none. */
  hostHeader: string;
  headers: Fields;
  /** The HTTP version the client spoke: "HTTP/1.0", "HTTP/1.1", "HTTP/2.0". */
  proto: string;
  scheme: Scheme;
  /** The peer's address (IPv4-mapped IPv6 unwrapped). */
  remoteAddr: string;
  body: BodySource | null;
  /** A WebSocket handshake: GET with `Upgrade: websocket`, `Connection: upgrade` and a key (RFC 6455 §4.2.1). */
  websocket: boolean;
  /** performance.now() when the request head was complete. */
  started: number;
  /** Fires when the client goes away before its answer is complete. */
  readonly gone: Cancel;
}

/** Something that can be stopped when the client goes away. */
export interface Cancellable {
  cancel(reason: Error): void;
}

/** The client going away: fired once; a listener set after it fired is told at once. */
export class Cancel {
  reason: Error | undefined;
  private listener: Cancellable | undefined;

  /** The one thing to stop when the client goes (the forward in progress); `undefined` forgets it. */
  listen(listener: Cancellable | undefined) {
    this.listener = listener;
    if (listener && this.reason) listener.cancel(this.reason);
  }

  fire(reason: Error) {
    if (this.reason) return;
    this.reason = reason;
    this.listener?.cancel(reason);
  }
}

/** The client went away (logged as 499). */
export class ClientGone extends Error {
  override name = "ClientGone";
  constructor() {
    super("client disconnected");
  }
}
