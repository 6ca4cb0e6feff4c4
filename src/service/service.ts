// A service: a name, its routing and forwarding options, the targets that
// serve it now (writers, optional readers, optional rollout set), and the old
// targets still draining. Knows nothing of listeners or the CLI; the proxy and
// the admin API both act on it.
import { log } from "../log.ts";
import type { BasicAuth } from "../proxy/basic-auth.ts";
import type { ServiceLoad } from "../metrics.ts";
import { Balancer } from "./balancer.ts";
import { HealthCheck, type HealthCheckConfig } from "./health-check.ts";
import type { ServiceOptions } from "./options.ts";
import { PauseController } from "./pause.ts";
import { RolloutSplit } from "./rollout.ts";
import type { Target } from "./target.ts";

/**
 * Waits for what is in flight on these targets of a service, wherever it runs
 * (this process, or every worker), and returns how many were cancelled at the
 * deadline. `leaving`: the targets leave the service, so their WebSockets are
 * closed at once.
 */
export type Drainer = (service: string, targets: readonly Target[], timeoutMs: number, leaving: boolean) => Promise<number>;

/** The drainer of a process that serves its own traffic. */
export const drainHere: Drainer = async (_service, targets, timeoutMs, leaving) => {
  const results = await Promise.all(targets.map((t) => t.drain(timeoutMs, leaving)));
  return results.reduce((sum, r) => sum + r.cancelled, 0);
};

/** Where a service's drains run, and whether it health-checks its targets (a worker's copy does not). */
export interface ServiceRuntime {
  drainer: Drainer;
  monitored: boolean;
  /** Called when a periodic health check changes a target's health. */
  healthChanged(): void;
}

const STANDALONE: ServiceRuntime = { drainer: drainHere, monitored: true, healthChanged: () => {} };

export type { ServiceOptions };

/** The health check a service's options describe. */
export function healthCheckOf(options: ServiceOptions): HealthCheckConfig {
  return {
    path: options.healthCheckPath,
    intervalMs: options.healthCheckInterval,
    timeoutMs: options.healthCheckTimeout,
    port: options.healthCheckPort,
    host: options.healthCheckHost,
  };
}

export type TargetRole = "writer" | "reader" | "rollout";

/** Which set a request is sent to, chosen from its method and cookies. */
export interface Pick {
  target: Target | undefined;
  /** Set when a write must pin the client's next reads to the writers. */
  pinWriter: boolean;
}

export class Service {
  private writers: Balancer;
  private readers = new Balancer([]);
  private rolloutSet: Balancer | undefined;
  split = new RolloutSplit();
  /** Old targets that get no new requests and are finishing what they have. */
  readonly draining = new Set<Target>();
  /**
   * Old targets a deploy's verify window keeps ready to switch back to: they
   * get no new requests (they are draining) but are still health-checked.
   */
  readonly kept = new Set<Target>();
  /** New targets being health-checked before they join (shown by `list`, never routed to). */
  readonly adding = new Set<Target>();
  readonly pause = new PauseController();
  /** The credentials of --basic-auth-file, as read at deploy; undefined when the service is open. */
  basicAuth: BasicAuth | undefined;
  private readonly monitors = new Map<Target, HealthCheck>();

  constructor(
    readonly name: string,
    public options: ServiceOptions,
    targets: Target[],
    private readonly runtime: ServiceRuntime = STANDALONE,
  ) {
    this.writers = new Balancer(targets);
  }

  get hosts() {
    return this.options.hosts;
  }

  get pathPrefixes() {
    return this.options.pathPrefixes;
  }

  get healthCheck(): HealthCheckConfig {
    return healthCheckOf(this.options);
  }

  /** The active (writer) targets. */
  get targets(): readonly Target[] {
    return this.writers.targets;
  }

  get readTargets(): readonly Target[] {
    return this.readers.targets;
  }

  get rolloutTargets(): readonly Target[] | undefined {
    return this.rolloutSet?.targets;
  }

  /** Every target that gets new requests, in any role. */
  get live(): Target[] {
    return [...this.targets, ...this.readTargets, ...(this.rolloutTargets ?? [])];
  }

  /** The target with this address in any set, so a redeploy reuses it (with its in-flight count). */
  find(address: string): Target | undefined {
    return [...this.live, ...this.draining].find((t) => t.address === address);
  }

  /**
   * Picks a target: rollout clients go to the rollout set; reads go to healthy
   * readers unless the client wrote recently; everything else round robin
   * over the writers.
   */
  pick(isRead: boolean, rolloutCookie: string | undefined, pinnedToWriter: boolean): Pick {
    if (this.rolloutSet && this.split.chooses(rolloutCookie)) {
      const target = this.rolloutSet.pick(false);
      if (target) return { target, pinWriter: false };
    }
    if (isRead) {
      if (!pinnedToWriter && this.readers.targets.length) {
        const reader = this.readers.pick(false);
        if (reader) return { target: reader, pinWriter: false };
      }
      return { target: this.writers.pick(), pinWriter: false };
    }
    return { target: this.writers.pick(), pinWriter: this.readers.targets.length > 0 };
  }

  /**
   * Atomically switches new requests to the given sets. Returns the targets
   * that no set holds any more: they are now draining, and the caller drains
   * them.
   */
  cutover(next: { writers?: Target[]; readers?: Target[]; rollout?: Target[] | null }): Target[] {
    const before = this.live;
    if (next.writers) this.writers = new Balancer(next.writers);
    if (next.readers) this.readers = new Balancer(next.readers);
    if (next.rollout === null) this.rolloutSet = undefined;
    else if (next.rollout) this.rolloutSet = new Balancer(next.rollout);
    const after = this.live;
    for (const target of after) this.draining.delete(target);
    const old = before.filter((t) => !after.includes(t));
    for (const target of old) this.draining.add(target);
    this.monitor();
    return old;
  }

  /** Drains old targets (step 4 of the deploy sequence, README "How it works") and forgets them once drained. */
  async drain(targets: Target[], timeoutMs: number): Promise<void> {
    if (targets.length === 0) return;
    log.info("Draining", { service: this.name, targets: targets.map((t) => t.address), drain_timeout_ms: timeoutMs });
    const cancelled = await this.runtime.drainer(this.name, targets, timeoutMs, true);
    // Commands on one service run one at a time, so none can have made a
    // draining target live again meanwhile.
    for (const target of targets) this.draining.delete(target);
    log.info("Drained", { service: this.name, targets: targets.map((t) => t.address), cancelled });
  }

  /**
   * Waits for the requests in flight on live targets (pause and stop),
   * cancelling them at the deadline. Open WebSockets are closed at once
   * (1001): a session never ends by itself, so waiting for one would only
   * hold the command for the whole drain timeout; the client's reconnect is
   * then held (pause) or refused (stop) like any new request.
   */
  async drainInFlight(timeoutMs: number): Promise<void> {
    await this.runtime.drainer(this.name, this.live, timeoutMs, true);
  }

  /** Requests in flight on its targets (draining ones too), and requests its pause holds. */
  load(): ServiceLoad {
    return {
      service: this.name,
      value: [...this.live, ...this.draining].reduce((sum, t) => sum + t.inflightCount, 0),
      paused: this.pause.waiting,
    };
  }

  role(target: Target): TargetRole {
    if (this.readTargets.includes(target)) return "reader";
    if (this.rolloutTargets?.includes(target)) return "rollout";
    return "writer";
  }

  /**
   * Health checks go on after the deploy for every live target (README "Traffic control"): a
   * failing target leaves the rotation and rejoins when it passes, and `list`
   * tells the truth. A lone writer stays in use while failing (see Balancer).
   */
  monitor() {
    if (!this.runtime.monitored) return;
    const watched = new Set<Target>([...this.live, ...this.kept]);
    for (const [target, check] of this.monitors) {
      if (!watched.has(target)) {
        check.stop();
        this.monitors.delete(target);
      }
    }
    for (const target of watched) {
      if (this.monitors.has(target)) continue;
      const check = new HealthCheck(target, this.healthCheck, (t, health, previous, result) => {
        if (health === previous) return;
        log.info("Target health changed", { service: this.name, target: t.address, from: previous, to: health, check: result.description });
        this.runtime.healthChanged();
      });
      this.monitors.set(target, check);
      // The target already passed its deploy checks, so the periodic check
      // starts one interval from now.
      check.startAfter(this.options.healthCheckInterval);
    }
  }

  /** Restarts monitors, e.g. after the health-check options changed. */
  restartMonitors() {
    this.dispose();
    this.monitor();
  }

  dispose() {
    for (const check of this.monitors.values()) check.stop();
    this.monitors.clear();
  }
}
