// A service: a name, its routing and forwarding options, the targets that
// serve it now, and the old targets still draining. Knows nothing of listeners
// or the CLI; the proxy and the admin API both act on it.
import { log } from "../log.ts";
import { Balancer } from "./balancer.ts";
import { HealthCheck, type HealthCheckConfig } from "./health-check.ts";
import type { Target } from "./target.ts";

export interface ServiceOptions {
  hosts: string[];
  pathPrefixes: string[];
  stripPathPrefix: boolean;
  tls: boolean;
  tlsStaging: boolean;
  tlsCertificatePath?: string;
  tlsPrivateKeyPath?: string;
  tlsRedirect: boolean;
  canonicalHost?: string;
  healthCheck: HealthCheckConfig;
  targetTimeoutMs: number;
  drainTimeoutMs: number;
  forwardHeaders: boolean;
  bufferRequests: boolean;
  bufferResponses: boolean;
  bufferMemory: number;
  maxRequestBody: number;
  maxResponseBody: number;
  errorPages?: string;
  logRequestHeaders: string[];
  logResponseHeaders: string[];
  writerAffinityTimeoutMs: number;
}

export type ServiceMode = "running" | "paused" | "stopped";

export class Service {
  private balancer: Balancer;
  /** Old targets that get no new requests and are finishing what they have. */
  readonly draining = new Set<Target>();
  private readonly monitors = new Map<Target, HealthCheck>();
  mode: ServiceMode = "running";
  stopMessage = "";

  constructor(
    readonly name: string,
    public options: ServiceOptions,
    targets: Target[],
  ) {
    this.balancer = new Balancer(targets);
  }

  get hosts() {
    return this.options.hosts;
  }

  get pathPrefixes() {
    return this.options.pathPrefixes;
  }

  get targets(): readonly Target[] {
    return this.balancer.targets;
  }

  target(address: string): Target | undefined {
    return this.targets.find((t) => t.address === address) ?? [...this.draining].find((t) => t.address === address);
  }

  pick(): Target | undefined {
    return this.balancer.pick();
  }

  /**
   * Atomically switches new requests to `next`. Returns the old targets that
   * are not in `next`: they are now draining, and the caller drains them.
   */
  cutover(next: Target[]): Target[] {
    const old = this.targets.filter((t) => !next.includes(t));
    for (const target of next) this.draining.delete(target);
    this.balancer = new Balancer(next);
    for (const target of old) this.draining.add(target);
    this.monitor();
    return old;
  }

  /** Drains old targets (SPEC §4 step 4) and forgets them once drained. */
  async drain(targets: Target[], timeoutMs: number): Promise<void> {
    if (targets.length === 0) return;
    log.info("Draining", { service: this.name, targets: targets.map((t) => t.address), drain_timeout_ms: timeoutMs });
    const results = await Promise.all(targets.map((t) => t.drain(timeoutMs)));
    const cancelled = results.reduce((sum, r) => sum + r.cancelled, 0);
    for (const target of targets) {
      // A target redeployed while it drained is active again: keep it.
      if (!this.targets.includes(target)) this.draining.delete(target);
    }
    log.info("Drained", { service: this.name, targets: targets.map((t) => t.address), cancelled });
  }

  /**
   * With several targets, health checks go on after the deploy so a failing
   * target leaves the rotation and rejoins when it passes (SPEC §5). A single
   * target is always used: taking it out would only turn 502s into 503s.
   */
  monitor() {
    const watched = this.targets.length > 1 ? this.targets : [];
    for (const [target, check] of this.monitors) {
      if (!watched.includes(target)) {
        check.stop();
        this.monitors.delete(target);
      }
    }
    for (const target of watched) {
      if (this.monitors.has(target)) continue;
      const check = new HealthCheck(target, this.options.healthCheck, (t, health, previous, result) => {
        if (health === previous) return;
        log.info("Target health changed", { service: this.name, target: t.address, from: previous, to: health, check: result.description });
      });
      // The target is already serving (it passed its deploy checks), so the
      // periodic check starts after one interval rather than at once.
      this.monitors.set(target, check);
      check.startAfter(this.options.healthCheck.intervalMs);
    }
  }

  /** Restarts monitors, e.g. after the health-check options changed. */
  restartMonitors() {
    for (const check of this.monitors.values()) check.stop();
    this.monitors.clear();
    this.monitor();
  }

  dispose() {
    for (const check of this.monitors.values()) check.stop();
    this.monitors.clear();
  }
}
