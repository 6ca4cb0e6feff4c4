// Rollout split (README "Traffic control"): clients are told apart by the value of the
// `parachute-rollout` cookie. Listed values always get the rollout targets; of
// the others, a stable N% do, chosen by a hash of the value so that a client
// always lands on the same side.
export const ROLLOUT_COOKIE = "parachute-rollout";
/** kamal-proxy's name for it, read when the client has no parachute-rollout cookie: an app moving over need not change. */
export const KAMAL_ROLLOUT_COOKIE = "kamal-rollout";

/**
 * FNV-1a with a murmur3 finaliser: cheap, stable across restarts and
 * processes, and the finaliser spreads the low bits that `% 100` looks at.
 */
export function hashValue(value: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) {
    hash ^= value.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

export class RolloutSplit {
  constructor(
    readonly percent = 0,
    readonly list: readonly string[] = [],
  ) {}

  /** Does the client with this cookie value go to the rollout targets? No cookie → no. */
  chooses(value: string | undefined): boolean {
    if (value === undefined || value === "") return false;
    if (this.list.includes(value)) return true;
    return hashValue(value) % 100 < this.percent;
  }
}
