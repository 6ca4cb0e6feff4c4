// Health checks: GET http://target:port/<path> with its own timeout; any 2xx
// is healthy. A HealthCheck runs on an interval until stopped and reports
// every change of health to its owner.
import { formatDuration } from "../values.ts";
import type { TargetHealth } from "./target.ts";

export interface HealthCheckConfig {
  path: string;
  intervalMs: number;
  timeoutMs: number;
  port?: number;
  host?: string;
}

/**
 * What a check reads and updates: a live target itself, or a deploy's own
 * record of one (so that checking a target does not change how it serves).
 */
export interface Checked {
  readonly address: string;
  health: TargetHealth;
  lastCheck: string;
  /** When the last check ended (ms since the epoch); absent before the first. */
  lastCheckAt?: number;
}

export interface CheckResult {
  ok: boolean;
  /** e.g. `GET /up returned 500`, used verbatim in error messages. */
  description: string;
}

function describeFailure(error: unknown, path: string, timeoutMs: number): string {
  const e = error as { name?: string; code?: string; message?: string };
  if (e?.name === "TimeoutError") return `GET ${path} timed out after ${formatDuration(timeoutMs)}`;
  const reason = e?.code === "ConnectionRefused" || e?.code === "ECONNREFUSED" ? "connection refused" : (e?.code ?? e?.message ?? "failed");
  return `GET ${path} failed: ${reason}`;
}

export async function checkOnce(target: Pick<Checked, "address">, config: HealthCheckConfig): Promise<CheckResult> {
  const hostPart = target.address.slice(0, target.address.lastIndexOf(":"));
  const port = config.port ?? Number(target.address.slice(target.address.lastIndexOf(":") + 1));
  const headers: Record<string, string> = { "user-agent": "parachute-health-check" };
  if (config.host) headers.host = config.host;
  try {
    const res = await fetch(`http://${hostPart}:${port}${config.path}`, {
      headers,
      redirect: "manual",
      signal: AbortSignal.timeout(config.timeoutMs),
      keepalive: false,
    });
    await res.body?.cancel().catch(() => {});
    const ok = res.status >= 200 && res.status < 300;
    return { ok, description: `GET ${config.path} returned ${res.status}` };
  } catch (error) {
    return { ok: false, description: describeFailure(error, config.path, config.timeoutMs) };
  }
}

export type HealthListener = (target: Checked, health: TargetHealth, previous: TargetHealth, result: CheckResult) => void;

/** Periodic checks for one target. The first result always counts as a change from `adding`. */
export class HealthCheck {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    readonly target: Checked,
    private config: HealthCheckConfig,
    private readonly onChange: HealthListener,
  ) {}

  start(): this {
    void this.tick();
    return this;
  }

  startAfter(delayMs: number): this {
    this.timer = setTimeout(() => void this.tick(), delayMs);
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async tick() {
    if (this.stopped) return;
    const result = await checkOnce(this.target, this.config);
    if (this.stopped) return;
    const previous = this.target.health;
    const health: TargetHealth = result.ok ? "healthy" : previous === "adding" ? "adding" : "unhealthy";
    this.target.lastCheck = result.description;
    this.target.lastCheckAt = Date.now();
    if (health !== previous || previous === "adding") {
      this.target.health = health;
      this.onChange(this.target, health, previous, result);
    }
    this.timer = setTimeout(() => void this.tick(), this.config.intervalMs);
  }
}
