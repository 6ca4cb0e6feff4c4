// Run options (README "Configuration"): an explicit flag beats PARACHUTE_<NAME>, which beats
// <NAME>, which beats the default. A bad value is an error naming where it
// came from; it never silently falls back.
import * as fs from "node:fs";
import { isIP } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { booleanSchema, durationSchema, portSchema, positiveCountSchema, workerCountSchema } from "./values.ts";
import * as v from "valibot";

export interface RunOptions {
  httpPort: number;
  httpsPort: number;
  bind: string | undefined;
  metricsPort: number;
  stateDir: string;
  debug: boolean;
  socket: string;
  /** 1: one process serves everything; more: a control plane and this many workers. */
  workers: number;
  acme: AcmeOptions;
}

/** ACME settings come from the environment only (README "TLS" names PARACHUTE_ACME_DIRECTORY). */
export interface AcmeOptions {
  directoryUrl?: string;
  stagingDirectoryUrl?: string;
  caFile?: string;
  email?: string;
  renewBeforeMs: number;
  checkIntervalMs: number;
  retryBackoffMs: number;
  /** ACME orders that run at once; the rest wait their turn. */
  concurrency: number;
  /** How many on-demand asks a service may make per second (and in one burst). */
  onDemandRate: number;
}

export class ConfigError extends Error {}

function readOptional(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/** A cgroup CPU quota in cores (a container's `--cpus`), from cgroup v2 or v1; undefined when there is none. */
function cgroupCpuQuota(read: (file: string) => string | undefined): number | undefined {
  const [quota, period] = (read("/sys/fs/cgroup/cpu.max") ?? "").trim().split(/\s+/).map(Number);
  if (quota! > 0 && period! > 0) return quota! / period!;
  const v1Quota = Number(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"));
  const v1Period = Number(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
  if (v1Quota > 0 && v1Period > 0) return v1Quota / v1Period;
  return undefined;
}

/**
 * The cores this process may use, the default worker count: the CPUs it may
 * run on (its affinity), lowered to a cgroup CPU quota rounded up, so that a
 * container limited to 2 CPUs on a 64-core host runs 2 workers, not 64.
 */
export function availableCores(cpus = os.availableParallelism(), read: (file: string) => string | undefined = readOptional): number {
  const quota = cgroupCpuQuota(read);
  return quota === undefined ? cpus : Math.max(1, Math.min(cpus, Math.ceil(quota)));
}

type Env = Record<string, string | undefined>;

/** The admin socket path; the server and every client resolve it the same way (README "Configuration"). */
export function resolveSocketPath(flag: string | undefined, env: Env = process.env): string {
  if (flag) return path.resolve(flag);
  if (env.PARACHUTE_SOCKET) return path.resolve(env.PARACHUTE_SOCKET);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, "parachute.sock");
  return path.join(os.tmpdir(), "parachute.sock");
}

function pick(flagName: string, flag: string | boolean | undefined, envName: string, env: Env) {
  if (flag !== undefined) return { value: flag, source: `--${flagName}` };
  const prefixed = env[`PARACHUTE_${envName}`];
  if (prefixed !== undefined) return { value: prefixed, source: `PARACHUTE_${envName}` };
  const plain = env[envName];
  if (plain !== undefined) return { value: plain, source: envName };
  return undefined;
}

function resolve<T>(schema: v.GenericSchema<unknown, T>, flagName: string, flag: string | boolean | undefined, envName: string, env: Env, fallback: T): T {
  const chosen = pick(flagName, flag, envName, env);
  if (!chosen) return fallback;
  const result = v.safeParse(schema, chosen.value);
  if (!result.success) throw new ConfigError(`invalid value for ${chosen.source}: ${result.issues[0]!.message}`);
  return result.output;
}

const bindSchema = v.pipe(
  v.string(),
  v.check((s) => s === "localhost" || isIP(s.replace(/^\[(.*)\]$/, "$1")) !== 0, (i) => `invalid address "${i.input}" (expected an IPv4 or IPv6 address)`),
  v.transform((s) => s.replace(/^\[(.*)\]$/, "$1")),
);
const dirSchema = v.pipe(v.string(), v.nonEmpty("empty directory"));

export interface RunFlags {
  "http-port"?: string;
  "https-port"?: string;
  bind?: string;
  "metrics-port"?: string;
  "state-dir"?: string;
  debug?: boolean;
  socket?: string;
  workers?: string;
}

const urlSchema = v.pipe(v.string(), v.url((i) => `invalid URL "${i.input}"`));

function envValue<T>(schema: v.GenericSchema<unknown, T>, name: string, env: Env, fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const result = v.safeParse(schema, raw);
  if (!result.success) throw new ConfigError(`invalid value for ${name}: ${result.issues[0]!.message}`);
  return result.output;
}

export function resolveAcmeOptions(env: Env = process.env): AcmeOptions {
  return {
    directoryUrl: envValue(urlSchema, "PARACHUTE_ACME_DIRECTORY", env, undefined as string | undefined),
    stagingDirectoryUrl: envValue(urlSchema, "PARACHUTE_ACME_STAGING_DIRECTORY", env, undefined as string | undefined),
    caFile: envValue(v.string(), "PARACHUTE_ACME_CA", env, undefined as string | undefined),
    email: envValue(v.string(), "PARACHUTE_ACME_EMAIL", env, undefined as string | undefined),
    renewBeforeMs: envValue(durationSchema, "PARACHUTE_ACME_RENEW_BEFORE", env, 30 * 86_400_000),
    checkIntervalMs: Math.max(envValue(durationSchema, "PARACHUTE_ACME_CHECK_INTERVAL", env, 12 * 3_600_000), 100),
    retryBackoffMs: Math.max(envValue(durationSchema, "PARACHUTE_ACME_RETRY", env, 30_000), 100),
    concurrency: envValue(positiveCountSchema, "PARACHUTE_ACME_CONCURRENCY", env, 4),
    onDemandRate: envValue(positiveCountSchema, "PARACHUTE_TLS_ON_DEMAND_RATE", env, 10),
  };
}

export function resolveRunOptions(flags: RunFlags, env: Env = process.env): RunOptions {
  const stateDir = resolve(dirSchema, "state-dir", flags["state-dir"], "STATE_DIR", env, path.join(os.homedir(), ".config", "parachute"));
  return {
    httpPort: resolve(portSchema, "http-port", flags["http-port"], "HTTP_PORT", env, 80),
    httpsPort: resolve(portSchema, "https-port", flags["https-port"], "HTTPS_PORT", env, 443),
    bind: resolve(bindSchema, "bind", flags.bind, "BIND", env, undefined as string | undefined),
    metricsPort: resolve(portSchema, "metrics-port", flags["metrics-port"], "METRICS_PORT", env, 0),
    stateDir: path.resolve(stateDir),
    debug: resolve(booleanSchema, "debug", flags.debug, "DEBUG", env, false),
    socket: resolveSocketPath(flags.socket, env),
    workers: resolve(workerCountSchema, "workers", flags.workers, "WORKERS", env, availableCores()),
    acme: resolveAcmeOptions(env),
  };
}
