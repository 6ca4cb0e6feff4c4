// What `list` shows of a service (README "Commands"): its routing, its mode
// and every target with its state, role and last health check, draining and
// adding ones too. The status page shows the same view (README "Status page"),
// with the time of each check.
import type { Checked } from "./health-check.ts";
import type { Service } from "./service.ts";

export interface TargetView {
  address: string;
  state: string;
  role: "writer" | "reader" | "rollout" | "draining" | "adding";
  /** The last health check's result, e.g. `GET /up returned 200`. */
  lastCheck: string;
  /**
   * When it ended (ISO 8601); absent before the first check, and in `list`,
   * whose output stays the same while nothing changes.
   */
  lastCheckAt?: string;
}

export interface ServiceView {
  name: string;
  hosts: string[];
  pathPrefixes: string[];
  tls: boolean;
  /** running, paused or stopped */
  state: string;
  message?: string;
  targets: TargetView[];
  rollout?: { percent: number; list: string[] };
}

/** `checkTimes`: with the time of each target's last check (the status page). */
export function serviceView(s: Service, { checkTimes = false } = {}): ServiceView {
  const lastCheck = (t: Pick<Checked, "lastCheck" | "lastCheckAt">) => ({
    lastCheck: t.lastCheck,
    ...(checkTimes && t.lastCheckAt !== undefined ? { lastCheckAt: new Date(t.lastCheckAt).toISOString() } : {}),
  });
  return {
    name: s.name,
    hosts: s.options.hosts,
    pathPrefixes: s.options.pathPrefixes,
    tls: s.options.tls,
    state: s.pause.mode,
    ...(s.pause.mode === "stopped" && s.pause.message ? { message: s.pause.message } : {}),
    targets: [
      ...s.live.map((t) => ({ address: t.address, state: t.health as string, role: s.role(t), ...lastCheck(t) })),
      ...[...s.draining].map((t) => ({ address: t.address, state: "draining", role: "draining" as const, ...lastCheck(t) })),
      ...[...s.adding].filter(([t]) => !s.live.includes(t)).map(([t, probe]) => ({ address: t.address, state: "adding", role: "adding" as const, ...lastCheck(probe) })),
    ],
    ...(s.rolloutTargets ? { rollout: { percent: s.split.percent, list: [...s.split.list] } } : {}),
  };
}
