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

/** A one-shot cancellation: listeners registered after it fired are called at once. */
export class Cancel {
  reason: Error | undefined;
  private listeners: ((reason: Error) => void)[] | undefined;

  on(listener: (reason: Error) => void): () => void {
    if (this.reason) {
      listener(this.reason);
      return () => {};
    }
    (this.listeners ??= []).push(listener);
    return () => {
      const i = this.listeners?.indexOf(listener) ?? -1;
      if (i !== -1) this.listeners!.splice(i, 1);
    };
  }

  fire(reason: Error) {
    if (this.reason) return;
    this.reason = reason;
    const listeners = this.listeners;
    this.listeners = undefined;
    for (const listener of listeners ?? []) listener(reason);
  }
}

/** The client went away (logged as 499). */
export class ClientGone extends Error {
  override name = "ClientGone";
  constructor() {
    super("client disconnected");
  }
}
