// Connections that take nothing the proxy writes to them. A client that
// never reads its download, a target that never reads its upload, either
// end of a WebSocket that stopped reading: each would hold its connection,
// the other end's and the bytes queued between them for good. A connection
// whose writes have been blocked this long without any progress is closed,
// as nginx's send_timeout and proxy_send_timeout do (60 s there too).

/** How long a connection may take none of what is written to it. */
export const WRITE_STALL_MS = 60_000;

/** Something whose writes can block; it is closed when they stay blocked too long. */
export interface Stallable {
  destroy(): void;
}

export class StallWatch {
  private readonly since = new Map<Stallable, number>();

  constructor(private readonly limitMs = WRITE_STALL_MS) {}

  /** Writes to `item` are blocked from `now` on (not moved when already blocked). */
  blocked(item: Stallable, now: number) {
    if (!this.since.has(item)) this.since.set(item, now);
  }

  /** `item` took what was queued (or is gone). */
  unblocked(item: Stallable) {
    this.since.delete(item);
  }

  get size(): number {
    return this.since.size;
  }

  /** Closes, and forgets, what has been blocked longer than the limit at `now`. */
  sweep(now: number): Stallable[] {
    const expired: Stallable[] = [];
    for (const [item, since] of this.since) if (now - since >= this.limitMs) expired.push(item);
    for (const item of expired) {
      this.since.delete(item);
      item.destroy();
    }
    return expired;
  }
}

/** The one watch of the process, swept once a second while anything is blocked. */
const watch = new StallWatch();
let timer: ReturnType<typeof setInterval> | undefined;

export function writesBlocked(item: Stallable) {
  watch.blocked(item, Date.now());
  if (!timer) {
    timer = setInterval(() => {
      watch.sweep(Date.now());
      if (watch.size === 0) {
        clearInterval(timer);
        timer = undefined;
      }
    }, 1_000);
    timer.unref?.();
  }
}

export function writesUnblocked(item: Stallable) {
  watch.unblocked(item);
}
