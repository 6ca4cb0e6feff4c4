// A target is one instance of an app (host:port). It knows its health and its
// in-flight requests, which is all draining needs: a target has drained when
// nothing is in flight, or when the drain deadline has cancelled what was left.
export type TargetHealth = "adding" | "healthy" | "unhealthy";

/** Why an in-flight request was cancelled by the proxy (the forwarder maps it to a status). */
export class DrainCancelled extends Error {
  override name = "DrainCancelled";
}

export class Target {
  health: TargetHealth = "adding";
  /** Result of the last health check, for error messages and `list`. */
  lastCheck = "not checked yet";
  private readonly inflight = new Set<AbortController>();
  private idleWaiters: (() => void)[] = [];

  constructor(readonly address: string) {}

  /** host:port → the origin requests are sent to. */
  get origin(): string {
    return `http://${this.address}`;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** Registers an in-flight request; the returned function must be called exactly once when it is done. */
  begin(controller: AbortController): () => void {
    this.inflight.add(controller);
    return () => {
      if (!this.inflight.delete(controller)) return;
      if (this.inflight.size === 0) this.wakeIdleWaiters();
    };
  }

  /**
   * Resolves once nothing is in flight. At the deadline, whatever is still
   * running is cancelled (clients get 504) and the drain ends.
   */
  async drain(timeoutMs: number): Promise<{ cancelled: number }> {
    if (this.inflight.size === 0) return { cancelled: 0 };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const idle = new Promise<"idle">((resolve) => this.idleWaiters.push(() => resolve("idle")));
    const deadline = new Promise<"deadline">((resolve) => (timer = setTimeout(() => resolve("deadline"), timeoutMs)));
    const outcome = await Promise.race([idle, deadline]);
    clearTimeout(timer);
    if (outcome === "idle") return { cancelled: 0 };
    const cancelled = this.inflight.size;
    for (const controller of [...this.inflight]) controller.abort(new DrainCancelled("drain timeout"));
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
