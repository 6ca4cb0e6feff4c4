// A service as the state file keeps it (README "State"), and back: its
// options, target sets, maintenance mode and rollout split.
import { BasicAuth } from "../proxy/basic-auth.ts";
import type { SavedService } from "../state/store.ts";
import { RolloutSplit } from "./rollout.ts";
import { Service, type ServiceRuntime } from "./service.ts";
import { Target } from "./target.ts";

export function savedService(s: Service): SavedService {
  return {
    name: s.name,
    options: s.options,
    targets: s.targets.map((t) => t.address),
    readTargets: s.readTargets.map((t) => t.address),
    mode: s.pause.mode,
    stopMessage: s.pause.message,
    maxPauseMs: s.pause.maxPauseMs,
    ...(s.basicAuth ? { basicAuth: [...s.basicAuth.entries] } : {}),
    ...(s.rolloutTargets ? { rollout: { targets: s.rolloutTargets.map((t) => t.address), percent: s.split.percent, list: [...s.split.list] } } : {}),
  };
}

/**
 * The service a saved one describes. Its targets serve at once, as healthy:
 * they served before the restart, and its monitors (started by the cutover)
 * re-check each of them in the background.
 */
export function restoredService(saved: SavedService, runtime: ServiceRuntime): Service {
  const restored = (addresses: string[]) =>
    addresses.map((address) => {
      const target = new Target(address);
      target.health = "healthy";
      return target;
    });
  const service = new Service(saved.name, saved.options, restored(saved.targets), runtime);
  service.cutover({ readers: restored(saved.readTargets), ...(saved.rollout ? { rollout: restored(saved.rollout.targets) } : {}) });
  if (saved.basicAuth) service.basicAuth = new BasicAuth(saved.basicAuth, saved.name);
  if (saved.rollout) service.split = new RolloutSplit(saved.rollout.percent, saved.rollout.list);
  if (saved.mode === "paused") service.pause.pause(saved.maxPauseMs);
  if (saved.mode === "stopped") service.pause.stop(saved.stopMessage);
  return service;
}
