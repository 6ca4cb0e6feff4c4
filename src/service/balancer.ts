import type { Target } from "./target.ts";

/** Round robin over the healthy members of a fixed target list. */
export class Balancer {
  private next = 0;

  constructor(readonly targets: readonly Target[]) {}

  pick(): Target | undefined {
    const targets = this.targets;
    const n = targets.length;
    if (n === 1) {
      const only = targets[0]!;
      return only.health === "healthy" ? only : undefined;
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
