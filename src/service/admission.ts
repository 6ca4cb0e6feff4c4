// The health-check gate of a deploy, add or rollout (README "How it works",
// step 2): new targets join only once each has passed a check, and a target
// that does not within the deploy timeout fails the command, naming it.
import { log } from "../log.ts";
import { formatDuration } from "../values.ts";
import { CommandError, type Progress } from "./command-error.ts";
import { HealthCheck, type Checked, type HealthCheckConfig } from "./health-check.ts";
import type { Service } from "./service.ts";
import type { Target } from "./target.ts";

export interface Admission {
  /** The service's name, for logs. */
  name: string;
  /** The service the targets join, if it exists already. */
  service: Service | undefined;
  config: HealthCheckConfig;
  timeoutMs: number;
  force: boolean;
  progress: Progress;
}

/**
 * Health-checks the targets that are not already serving healthily (or
 * trusts them with --force) and returns them. Their health does not change
 * here: the caller marks them healthy as it switches to them, so a command
 * that fails leaves every target serving as it was (once all pass, each
 * records the check that let it in, which `list` shows).
 */
export async function admit(targets: Target[], a: Admission): Promise<Target[]> {
  const live = a.service?.live ?? [];
  const fresh = targets.filter((t) => !(live.includes(t) && t.health === "healthy"));
  if (a.force) return fresh;
  const shown = fresh.filter((t) => !live.includes(t));
  const probes = fresh.map((t): Checked => ({ address: t.address, health: "adding", lastCheck: "not checked yet" }));
  // `list` and the status page show a new target with its probe's last check.
  for (const target of shown) a.service?.adding.set(target, probes[fresh.indexOf(target)]!);
  try {
    await waitHealthy(probes, a);
  } finally {
    for (const target of shown) a.service?.adding.delete(target);
  }
  // They all passed: each target's last check is the one that let it in.
  fresh.forEach((t, i) => {
    t.lastCheck = probes[i]!.lastCheck;
    t.lastCheckAt = probes[i]!.lastCheckAt;
  });
  return fresh;
}

/**
 * Checks each target every interval until all have passed once, printing
 * each change. Fails after the timeout naming every target still failing.
 * The checks update a record of their own, not the target: a live target
 * that is failing keeps its state (and its traffic) while it is re-checked.
 */
async function waitHealthy(probes: Checked[], { name, config, timeoutMs, progress }: Admission) {
  if (probes.length === 0) return;
  for (const probe of probes) {
    progress(`Target ${probe.address}: adding, checking GET ${config.path} every ${formatDuration(config.intervalMs)}`);
  }
  const checks: HealthCheck[] = [];
  const lastReported = new Map<Checked, string>();
  const allHealthy = new Promise<void>((resolve) => {
    const pending = new Set(probes);
    for (const probe of probes) {
      const check = new HealthCheck(probe, config, (t, health, _previous, result) => {
        if (health === "healthy") {
          progress(`Target ${t.address}: healthy (${result.description})`);
          log.info("Target health changed", { service: name, target: t.address, from: "adding", to: "healthy", check: result.description });
          check.stop();
          pending.delete(t);
          if (pending.size === 0) resolve();
        } else if (lastReported.get(t) !== result.description) {
          lastReported.set(t, result.description);
          progress(`Target ${t.address}: not healthy yet (${result.description})`);
        }
      });
      checks.push(check.start());
    }
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  const outcome = await Promise.race([allHealthy, timedOut]);
  clearTimeout(timer);
  for (const check of checks) check.stop();
  if (outcome !== "timeout") return;
  const failing = probes.filter((t) => t.health !== "healthy");
  const lines = failing.map((t) => `target ${t.address} failed to become healthy within ${formatDuration(timeoutMs)} (last check: ${t.lastCheck})`);
  log.warn("Deploy failed", { service: name, reason: lines.join("; ") });
  throw new CommandError(lines.join("\nError: "), 422);
}
