// Types for the part of Bun's built-in `ws` module (its Node `ws` client
// compatibility layer, no npm package) that the WebSocket relay uses. Bun
// ships no declarations for it.
declare module "ws" {
  import type { EventEmitter } from "node:events";
  import type { IncomingMessage } from "node:http";

  export class WebSocket extends EventEmitter {
    static readonly CONNECTING: 0;
    static readonly OPEN: 1;
    static readonly CLOSING: 2;
    static readonly CLOSED: 3;
    constructor(url: string, protocols: string[], options: { headers?: Record<string, string> });
    readonly readyState: number;
    readonly protocol: string;
    readonly bufferedAmount: number;
    readonly isPaused: boolean;
    send(data: string | ArrayBufferLike | ArrayBufferView): void;
    close(code?: number, reason?: string): void;
    terminate(): void;
    pause(): void;
    resume(): void;
    on(event: "open", listener: () => void): this;
    on(event: "message", listener: (data: Buffer, isBinary: boolean) => void): this;
    on(event: "close", listener: (code: number, reason: Buffer) => void): this;
    on(event: "error", listener: (error: Error) => void): this;
    on(event: "unexpected-response", listener: (request: unknown, response: IncomingMessage) => void): this;
    removeAllListeners(event?: string): this;
  }
}
