import type { Target } from "./target.ts";

/**
 * Round robin over the healthy members of a fixed target list. A lone writer
 * is used even when its checks fail: there is nowhere else to send the
 * request, and the app's own answer (or a 502) says more than a 503 would.
 */
export class Balancer {
  private next = 0;

  constructor(readonly targets: readonly Target[]) {}

  /**
   * The next healthy target. `loneFallback`: a set of one is used even while
   * it fails its checks (the writers: nothing else could answer). Readers and
   * rollout targets pass false, since the writers are there to fall back to.
   */
  pick(loneFallback = true): Target | undefined {
    const targets = this.targets;
    const n = targets.length;
    if (n === 1 && loneFallback) {
      const only = targets[0]!;
      return only.health === "adding" ? undefined : only;
    }
    for (let i = 0; i < n; i++) {
      const target = targets[(this.next + i) % n]!;
      if (target.health === "healthy") {
        this.next = (this.next + i + 1) % n;
        return target;
      }
    }
    return undefined;
  }
}
