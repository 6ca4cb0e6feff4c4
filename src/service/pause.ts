// Maintenance modes of a service (README "Traffic control"): running, paused (new requests
// wait, up to max-pause), stopped (new requests get 503 with a message).
export type ServiceMode = "running" | "paused" | "stopped";

/** How a wait ended: resumed, stopped, past max-pause, or the server itself stopping. */
export type PauseOutcome = "running" | "stopped" | "timeout" | "shutdown";

export class PauseController {
  mode: ServiceMode = "running";
  message = "";
  maxPauseMs = 30_000;
  private waiters = new Set<(outcome: PauseOutcome) => void>();

  /** For a paused service: waits until resume/stop, or gives up after max-pause. */
  wait(): Promise<PauseOutcome> {
    if (this.mode !== "paused") return Promise.resolve(this.mode);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        resolve("timeout");
      }, this.maxPauseMs);
      const wake = (outcome: PauseOutcome) => {
        clearTimeout(timer);
        resolve(outcome);
      };
      this.waiters.add(wake);
    });
  }

  get waiting(): number {
    return this.waiters.size;
  }

  pause(maxPauseMs: number) {
    this.mode = "paused";
    this.maxPauseMs = maxPauseMs;
  }

  /** Stops the service; requests waiting in a pause get the 503 at once. */
  stop(message: string) {
    this.mode = "stopped";
    this.message = message;
    this.release("stopped");
  }

  resume() {
    this.mode = "running";
    this.message = "";
    this.release("running");
  }

  /** The server stops before a resume came: requests waiting here are answered now. */
  releaseForShutdown() {
    this.release("shutdown");
  }

  private release(outcome: PauseOutcome) {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake(outcome);
  }
}
