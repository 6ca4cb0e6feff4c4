// The benchmark's settings, all from the environment (documented in
// bench/README.md), validated once so that a typo fails before any process starts.
import * as path from "node:path";

export const ROOT = path.resolve(import.meta.dir, "..");

export const SCENARIOS = ["small", "big", "rss", "https", "handshake", "h2"] as const;
export type ScenarioId = (typeof SCENARIOS)[number];

export const TARGETS = ["direct", "parachute", "parachute-workers", "bun-min", "node-min", "nginx"] as const;
export type TargetName = (typeof TARGETS)[number];

export interface Settings {
  duration: number;
  warmup: number;
  rounds: number;
  /** wrk connections for small responses and HTTPS keep-alive. */
  connections: number;
  threads: number;
  /** Workers of the parachute-workers row. */
  workers: number;
  /** wrk connections for the 1 MiB downloads. */
  bigConnections: number;
  /** Concurrent fresh connections of the handshake client. */
  handshakeConnections: number;
  h2Clients: number;
  h2Streams: number;
  /** Seconds of idle time before the "settled" RSS reading; 0 skips it. */
  settle: number;
  /** Before each run, wait up to this many seconds for the machine to be idle (a shared machine); 0 never waits. */
  quiet: number;
  scenarios: Set<ScenarioId>;
  targets: Set<TargetName>;
  /** "nginx" when nginx is installed (and not disabled), else "bun". */
  backend: "nginx" | "bun" | undefined;
  tlsKey: "ec" | "rsa";
  profile: boolean;
  keep: boolean;
  output: string;
  parachuteBin: string | undefined;
}

function numberSetting(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw.trim().replace(/s$/, ""));
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max} (got "${raw}")`);
  }
  return value;
}

/** A comma-separated subset of `all`; unset or empty means all of them. */
function listSetting<T extends string>(name: string, all: readonly T[]): Set<T> {
  const raw = process.env[name]?.trim();
  if (!raw) return new Set(all);
  const picked = raw.split(",").map((s) => s.trim().toLowerCase()).filter(Boolean);
  const unknown = picked.filter((p) => !all.includes(p as T));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(", ")} (choose from ${all.join(", ")})`);
  return new Set(picked as T[]);
}

function choiceSetting<T extends string>(name: string, choices: readonly T[], fallback: T | undefined): T | undefined {
  const raw = process.env[name]?.trim().toLowerCase();
  if (!raw) return fallback;
  if (!choices.includes(raw as T)) throw new Error(`${name} must be one of ${choices.join(", ")} (got "${raw}")`);
  return raw as T;
}

export function readSettings(): Settings {
  if (process.env.BENCH_BASELINE !== undefined) throw new Error("BENCH_BASELINE is gone: BENCH_TARGETS picks the rows (e.g. BENCH_TARGETS=direct,parachute,nginx)");
  const rounds = numberSetting("BENCH_ROUNDS", 1, 1, 20);
  const bin = process.env.PARACHUTE_BIN?.trim();
  const targets = listSetting("BENCH_TARGETS", TARGETS);
  // bun-min is every ratio's denominator; without it the tables lose their point.
  if (!targets.has("bun-min")) console.log("note: BENCH_TARGETS has no bun-min, so the tables have no ratios");
  const connections = numberSetting("BENCH_CONNECTIONS", 50, 1, 10_000);
  return {
    duration: numberSetting("BENCH_DURATION", 5, 1, 600),
    warmup: numberSetting("BENCH_WARMUP", 1, 0, 60),
    rounds,
    connections,
    threads: Math.min(numberSetting("BENCH_THREADS", 1, 1, 64), connections),
    workers: numberSetting("BENCH_WORKERS", 2, 2, 256),
    bigConnections: numberSetting("BENCH_BIG_CONNECTIONS", 20, 1, 10_000),
    handshakeConnections: numberSetting("BENCH_HANDSHAKE_CONNECTIONS", 8, 1, 1000),
    h2Clients: numberSetting("BENCH_H2_CLIENTS", 32, 1, 10_000),
    h2Streams: numberSetting("BENCH_H2_STREAMS", 4, 1, 1000),
    // One quick round is for checking that everything works; a minute of idle
    // time is only worth it when the numbers are meant to be kept.
    settle: numberSetting("BENCH_SETTLE", rounds > 1 ? 60 : 0, 0, 3600),
    quiet: numberSetting("BENCH_QUIET", 0, 0, 600),
    scenarios: listSetting("BENCH_SCENARIOS", SCENARIOS),
    targets,
    backend: choiceSetting("BENCH_BACKEND", ["nginx", "bun"] as const, undefined),
    tlsKey: choiceSetting("BENCH_TLS_KEY", ["ec", "rsa"] as const, "ec")!,
    profile: process.env.BENCH_PROFILE === "1",
    keep: process.env.BENCH_KEEP === "1",
    output: path.resolve(ROOT, process.env.BENCH_OUTPUT || "bench/results/latest.json"),
    parachuteBin: bin ? path.resolve(ROOT, bin) : undefined,
  };
}
