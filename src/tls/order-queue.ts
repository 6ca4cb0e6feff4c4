// ACME orders run a few at a time: a burst of new hosts (a deploy with many
// hosts, or on-demand hosts arriving together) waits in line instead of
// opening hundreds of orders at the CA at once (Let's Encrypt limits new
// orders per account per time).
export class OrderQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /** Runs `work` once fewer than `limit` others run; first come, first served. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await work();
    } finally {
      // The slot passes straight to the next in line, so `running` never drops under the limit while some wait.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  /** Orders waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }
}
