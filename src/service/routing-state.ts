// What a worker needs to route exactly as the control plane decides: every
// service's options, its target sets with their health, its maintenance mode
// and its rollout split. The control plane sends a new one after each change
// (README "Workers"); a worker applies it whole.
import type { CustomPages } from "../proxy/error-pages.ts";
import type { Credential } from "../proxy/htpasswd.ts";
import type { ServiceMode } from "./pause.ts";
import type { Service, ServiceOptions } from "./service.ts";
import type { Target, TargetHealth } from "./target.ts";

export interface TargetState {
  address: string;
  health: TargetHealth;
}

export interface ServiceState {
  name: string;
  options: ServiceOptions;
  writers: TargetState[];
  readers: TargetState[];
  rollout?: TargetState[];
  mode: ServiceMode;
  stopMessage: string;
  maxPauseMs: number;
  split: { percent: number; list: string[] };
  /** The --error-pages as read at deploy, by status: every worker answers with these, not with its own read of the directory. */
  pages?: [status: number, html: string][];
  /** The --basic-auth-file entries as read at deploy. */
  basicAuth?: Credential[];
  /** A deploy's verify window is counting these targets' answers (verification.ts); `window` numbers it. */
  verifying?: { window: number; targets: string[] };
}

export interface RoutingState {
  services: ServiceState[];
}

/** The window counting some of the service's targets, if one runs. */
function verifying(s: Service): ServiceState["verifying"] {
  const counted = s.live.filter((t) => t.tally);
  return counted.length ? { window: counted[0]!.tally!.window, targets: counted.map((t) => t.address) } : undefined;
}

const targetStates = (targets: readonly Target[]): TargetState[] => targets.map((t) => ({ address: t.address, health: t.health }));

export function routingState(services: Iterable<Service>, pagesOf: (service: Service) => CustomPages | undefined): RoutingState {
  return {
    services: [...services].map((s) => ({
      name: s.name,
      options: s.options,
      writers: targetStates(s.targets),
      readers: targetStates(s.readTargets),
      ...(s.rolloutTargets ? { rollout: targetStates(s.rolloutTargets) } : {}),
      mode: s.pause.mode,
      stopMessage: s.pause.message,
      maxPauseMs: s.pause.maxPauseMs,
      split: { percent: s.split.percent, list: [...s.split.list] },
      ...(pagesOf(s) ? { pages: [...pagesOf(s)!] } : {}),
      ...(s.basicAuth ? { basicAuth: [...s.basicAuth.entries] } : {}),
      ...(verifying(s) ? { verifying: verifying(s) } : {}),
    })),
  };
}
