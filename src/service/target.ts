// A target is one instance of an app (host:port). It knows its health and its
// in-flight requests, which is all draining needs: a target has drained when
// nothing is in flight, or when the drain deadline has cancelled what was left.
import type { TargetTally } from "./verification.ts";

export type TargetHealth = "adding" | "healthy" | "unhealthy";

/** Why an in-flight request was cancelled by the proxy (the forwarder maps it to a status). */
export class DrainCancelled extends Error {
  override name = "DrainCancelled";
}

/** A request or WebSocket in flight on a target, as the drain sees it. */
/** Why a draining target's WebSockets are closed before the deadline. */
export class TargetLeaving extends Error {
  override name = "TargetLeaving";
}

export interface InFlight {
  /** A WebSocket: closed (1001) as soon as its target starts draining, instead of holding the drain. */
  readonly websocket: boolean;
  /** Ends it now; `reason` says why (DrainCancelled at the drain deadline). */
  cancel(reason: Error): void;
}

export class Target {
  health: TargetHealth = "adding";
  /** Result of the last health check, for error messages and `list`. */
  lastCheck = "not checked yet";
  /** Set while a deploy's verify window counts this target's answers (verification.ts); otherwise the forwarder's only cost is this check. */
  tally: TargetTally | undefined = undefined;
  private readonly inflight = new Set<InFlight>();
  private idleWaiters: (() => void)[] = [];

  constructor(readonly address: string) {}

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** Registers something in flight, until `end` is called for it. */
  begin(entry: InFlight) {
    this.inflight.add(entry);
  }

  /** It is done (more calls do nothing). */
  end(entry: InFlight) {
    if (this.inflight.delete(entry) && this.inflight.size === 0) this.wakeIdleWaiters();
  }

  /**
   * Resolves once nothing is in flight. With `closeWebSockets` (the target is
   * leaving) its WebSockets are closed at once, with 1001, so that clients
   * reconnect to the new targets. At the deadline, whatever is still running
   * is cancelled (clients get 504) and the drain ends.
   */
  async drain(timeoutMs: number, closeWebSockets = false): Promise<{ cancelled: number }> {
    if (closeWebSockets) {
      for (const entry of [...this.inflight]) if (entry.websocket) entry.cancel(new TargetLeaving("target drained"));
    }
    if (this.inflight.size === 0) return { cancelled: 0 };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<"idle">((resolve) => this.idleWaiters.push(() => resolve("idle")));
    const deadline = new Promise<"deadline">((resolve) => (timer = setTimeout(() => resolve("deadline"), timeoutMs)));
    const outcome = await Promise.race([idle, deadline]);
    clearTimeout(timer);
    if (outcome === "idle") return { cancelled: 0 };
    const cancelled = this.inflight.size;
    for (const entry of [...this.inflight]) entry.cancel(new DrainCancelled("drain timeout"));
    this.inflight.clear();
    this.wakeIdleWaiters();
    return { cancelled };
  }

  private wakeIdleWaiters() {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
