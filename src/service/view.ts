// What `list` shows of a service (README "Commands"): its routing, its mode
// and every target with its state and role, draining and adding ones too.
import type { Service } from "./service.ts";

export interface ServiceView {
  name: string;
  hosts: string[];
  pathPrefixes: string[];
  tls: boolean;
  /** running, paused or stopped */
  state: string;
  message?: string;
  targets: { address: string; state: string; role: "writer" | "reader" | "rollout" | "draining" | "adding" }[];
  rollout?: { percent: number; list: string[] };
}

export function serviceView(s: Service): ServiceView {
  return {
    name: s.name,
    hosts: s.options.hosts,
    pathPrefixes: s.options.pathPrefixes,
    tls: s.options.tls,
    state: s.pause.mode,
    ...(s.pause.mode === "stopped" && s.pause.message ? { message: s.pause.message } : {}),
    targets: [
      ...s.live.map((t) => ({ address: t.address, state: t.health as string, role: s.role(t) })),
      ...[...s.draining].map((t) => ({ address: t.address, state: "draining", role: "draining" as const })),
      ...[...s.adding].filter((t) => !s.live.includes(t)).map((t) => ({ address: t.address, state: "adding", role: "adding" as const })),
    ],
    ...(s.rolloutTargets ? { rollout: { percent: s.split.percent, list: [...s.split.list] } } : {}),
  };
}
