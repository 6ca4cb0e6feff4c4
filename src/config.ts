// Run options (README "Configuration"): an explicit flag beats PARACHUTE_<NAME>, which beats
// <NAME>, which beats the default. A bad value is an error naming where it
// came from; it never silently falls back.
import * as fs from "node:fs";
import { isIP } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { cidrSchema } from "./proxy/cidr.ts";
import { booleanSchema, countSchema, durationSchema, longDurationSchema, portSchema, sizeSchema, workerCountSchema } from "./values.ts";
import * as v from "valibot";
import type { ProxySettings } from "./data/pipeline.ts";

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
  dnsResolvers?: string[];
  dnsWaitMs: number;
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

const bindSchema = v.pipe(
  v.string(),
  v.check((s) => s === "localhost" || isIP(s.replace(/^\[(.*)\]$/, "$1")) !== 0, (i) => `invalid address "${i.input}" (expected an IPv4 or IPv6 address)`),
  v.transform((s) => s.replace(/^\[(.*)\]$/, "$1")),
);
const dirSchema = v.pipe(v.string(), v.nonEmpty("empty directory"), v.transform((dir) => path.resolve(dir)));
const socketSchema = v.pipe(v.string(), v.nonEmpty("empty path"), v.transform((file) => path.resolve(file)));

const urlSchema = v.pipe(v.string(), v.url((i) => `invalid URL "${i.input}"`));
/** A repeatable flag gives a list; its environment variable, a comma-separated string. */
const commaListSchema = <T>(item: v.GenericSchema<unknown, T>) =>
  v.pipe(
    v.union([v.string(), v.array(v.string())], "expected a list"),
    v.transform((value): unknown[] => (typeof value === "string" ? value.split(",") : value).map((s) => s.trim()).filter(Boolean)),
    // Given, but naming nothing (`--proxy-protocol-from ""`): an error, not the option left off.
    v.minLength(1, "empty list"),
    v.array(item),
  );

/** DNS resolvers as node:dns takes them: `ip` or `ip:port` (`[ipv6]:port`), comma-separated. */
const resolversSchema = v.pipe(
  v.string(),
  v.transform((text) => text.split(",").map((s) => s.trim()).filter(Boolean)),
  v.check(
    (list) => list.length > 0 && list.every((entry) => isIP(entry) || /^(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:.]+\]):\d{1,5}$/i.test(entry)),
    (issue) => `invalid resolver list "${(issue.input as string[]).join(",")}" (expected ip or ip:port, comma-separated)`,
  ),
);

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
    renewBeforeMs: envValue(longDurationSchema, "PARACHUTE_ACME_RENEW_BEFORE", env, 30 * 86_400_000),
    checkIntervalMs: Math.max(envValue(durationSchema, "PARACHUTE_ACME_CHECK_INTERVAL", env, 12 * 3_600_000), 100),
    retryBackoffMs: Math.max(envValue(durationSchema, "PARACHUTE_ACME_RETRY", env, 30_000), 100),
    concurrency: envValue(countSchema, "PARACHUTE_ACME_CONCURRENCY", env, 4),
    onDemandRate: envValue(countSchema, "PARACHUTE_TLS_ON_DEMAND_RATE", env, 10),
    dnsResolvers: envValue(resolversSchema, "PARACHUTE_ACME_DNS_RESOLVER", env, undefined as string[] | undefined),
    dnsWaitMs: envValue(durationSchema, "PARACHUTE_ACME_DNS_WAIT", env, 120_000),
  };
}

/**
 * One run option: its flag, the environment variables that may set it (in
 * order of precedence, after the flag), its schema, its default, and its
 * help. The `run` command's flags and help, the README's run table and
 * `resolveRunOptions` all derive from `RUN_OPTIONS`.
 */
export interface RunField<T = unknown> {
  flag: string;
  kind: "value" | "boolean" | "list";
  /** Variables tried after the flag, first first. */
  env: string[];
  schema: v.GenericSchema<unknown, T>;
  /** The value when neither the flag nor a variable is set (computed: it may depend on the machine). */
  fallback: (env: Env) => T;
  help: string;
  hint?: string;
  /** The default as help and the README show it. */
  shownDefault: string;
}

/** The usual variables of an option: `PARACHUTE_<NAME>`, then `<NAME>`. */
const envNames = (name: string) => [`PARACHUTE_${name}`, name];

function runField<T>(spec: Omit<RunField<T>, "env" | "kind"> & { env: string | string[]; kind?: RunField["kind"] }): RunField<T> {
  return { ...spec, kind: spec.kind ?? "value", env: typeof spec.env === "string" ? envNames(spec.env) : spec.env };
}

export const RUN_OPTIONS = {
  httpPort: runField({ flag: "http-port", env: "HTTP_PORT", schema: portSchema, fallback: () => 80, shownDefault: "80", help: "port for HTTP traffic", hint: "PORT" }),
  httpsPort: runField({ flag: "https-port", env: "HTTPS_PORT", schema: portSchema, fallback: () => 443, shownDefault: "443", help: "port for HTTPS traffic (0 disables HTTPS)", hint: "PORT" }),
  bind: runField({ flag: "bind", env: "BIND", schema: bindSchema, fallback: (): string | undefined => undefined, shownDefault: "all interfaces", help: "address to listen on (IPv4 or IPv6)", hint: "ADDR" }),
  metricsPort: runField({ flag: "metrics-port", env: "METRICS_PORT", schema: portSchema, fallback: () => 0, shownDefault: "0 (off)", help: "Prometheus metrics listener", hint: "PORT" }),
  statusPort: runField({ flag: "status-port", env: "STATUS_PORT", schema: portSchema, fallback: () => 0, shownDefault: "0 (off)", help: "live status page (HTML, /status.json), read-only", hint: "PORT" }),
  statusBind: runField({
    flag: "status-bind",
    env: "STATUS_BIND",
    schema: bindSchema,
    fallback: () => "127.0.0.1",
    shownDefault: "127.0.0.1",
    help: "address of the status page; on a loopback address it refuses other peers (open it through an SSH tunnel)",
    hint: "ADDR",
  }),
  stateDir: runField({
    flag: "state-dir",
    env: "STATE_DIR",
    schema: dirSchema,
    fallback: () => path.join(os.homedir(), ".config", "parachute"),
    shownDefault: "`~/.config/parachute`",
    help: "state directory (created 0700)",
    hint: "DIR",
  }),
  tlsAcmeCachePath: runField({
    flag: "tls-acme-cache-path",
    env: "TLS_ACME_CACHE_PATH",
    schema: dirSchema,
    fallback: (): string | undefined => undefined,
    shownDefault: "`<state-dir>/certs`",
    help: "ACME cache (account, certificates, keys); hosts sharing it order each certificate once",
    hint: "DIR",
  }),
  debug: runField({ flag: "debug", kind: "boolean", env: "DEBUG", schema: booleanSchema, fallback: () => false, shownDefault: "false", help: "debug logs" }),
  socket: runField({
    flag: "socket",
    env: ["PARACHUTE_SOCKET"],
    schema: socketSchema,
    fallback: (env) => (env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, "parachute.sock") : path.join(os.tmpdir(), "parachute.sock")),
    shownDefault: "`$XDG_RUNTIME_DIR/parachute.sock`, else `<tmpdir>/parachute.sock`",
    help: "admin socket",
    hint: "PATH",
  }),
  proxyProtocol: runField({
    flag: "proxy-protocol",
    kind: "boolean",
    env: "PROXY_PROTOCOL",
    schema: booleanSchema,
    fallback: () => false,
    shownDefault: "false",
    help: "connections start with a PROXY protocol v1/v2 header, whose address is the client's; without one they are closed",
  }),
  proxyProtocolFrom: runField({
    flag: "proxy-protocol-from",
    kind: "list",
    env: "PROXY_PROTOCOL_FROM",
    schema: commaListSchema(cidrSchema),
    fallback: (): string[] => [],
    shownDefault: "any sender",
    help: "only these senders (CIDR) send a PROXY protocol header; others are served without one (implies --proxy-protocol)",
    hint: "CIDR",
  }),
  workers: runField({
    flag: "workers",
    env: "WORKERS",
    schema: workerCountSchema,
    fallback: () => availableCores(),
    shownDefault: "one per core it may use",
    help: "processes carrying the traffic (1-256); 1 = one process does everything",
    hint: "N",
  }),
  publishHealthCheck: runField({
    flag: "publish-health-check",
    kind: "boolean",
    env: "PUBLISH_HEALTH_CHECK",
    schema: booleanSchema,
    fallback: () => false,
    shownDefault: "false",
    help: "answer /.parachute/health and /.parachute/SERVICE/health on every host, for load balancers",
  }),
  publishHealthCheckGrace: runField({
    flag: "publish-health-check-grace",
    env: "PUBLISH_HEALTH_CHECK_GRACE",
    schema: durationSchema,
    fallback: () => 5_000,
    shownDefault: "5s",
    help: "on a graceful stop, how long /.parachute/health answers 503 before the ports close",
    hint: "DURATION",
  }),
  maxRequestBody: runField({
    flag: "max-request-body",
    env: "MAX_REQUEST_BODY",
    schema: sizeSchema,
    fallback: () => 0,
    shownDefault: "0 (no limit)",
    help: "largest request body (413 above) for every service deployed without --max-request-body",
    hint: "SIZE",
  }),
};

type RunValues = { [K in keyof typeof RUN_OPTIONS]: (typeof RUN_OPTIONS)[K] extends RunField<infer T> ? T : never };

export type RunOptions = RunValues & { acme: AcmeOptions };

/** Flag values as the command line gives them, by flag name. */
export type RunFlags = Record<string, string | boolean | string[] | undefined>;

/** The trusted senders of PROXY protocol headers, or undefined when the listeners expect none (README "PROXY protocol"). */
export function proxyProtocolPolicy(options: Pick<RunOptions, "proxyProtocol" | "proxyProtocolFrom">): { from: string[] } | undefined {
  return options.proxyProtocol || options.proxyProtocolFrom.length > 0 ? { from: options.proxyProtocolFrom } : undefined;
}

/** Where a value came from: the flag, or the first variable set. */
function pick(field: RunField, flags: RunFlags, env: Env): { value: string | boolean | string[]; source: string } | undefined {
  const flag = flags[field.flag];
  if (flag !== undefined) return { value: flag, source: `--${field.flag}` };
  for (const name of field.env) if (env[name] !== undefined) return { value: env[name]!, source: name };
  return undefined;
}

function resolveField<T>(field: RunField<T>, flags: RunFlags, env: Env): T {
  const chosen = pick(field as RunField, flags, env);
  if (!chosen) return field.fallback(env);
  const result = v.safeParse(field.schema, chosen.value);
  if (!result.success) throw new ConfigError(`invalid value for ${chosen.source}: ${result.issues[0]!.message}`);
  return result.output;
}

/** The admin socket path; the server and every client resolve it the same way (README "Configuration"). */
export function resolveSocketPath(flag: string | undefined, env: Env = process.env): string {
  return resolveField(RUN_OPTIONS.socket, { socket: flag || undefined }, env);
}

export function resolveRunOptions(flags: RunFlags, env: Env = process.env): RunOptions {
  const values = Object.fromEntries(Object.entries(RUN_OPTIONS).map(([key, field]) => [key, resolveField(field as RunField, flags, env)])) as RunValues;
  checkDistinctPorts(values);
  return { ...values, acme: resolveAcmeOptions(env) };
}

/**
 * Two of parachute's own listeners on one port would share its connections
 * between them (the metrics and status ports are opened with SO_REUSEPORT,
 * for upgrades): refused at start, naming both.
 */
function checkDistinctPorts(values: RunValues) {
  const ports = (["httpPort", "httpsPort", "metricsPort", "statusPort"] as const).filter((key) => values[key] > 0);
  for (const [i, a] of ports.entries()) {
    const b = ports.slice(i + 1).find((other) => values[other] === values[a]);
    if (b) throw new ConfigError(`--${RUN_OPTIONS[b].flag} ${values[b]} is also the --${RUN_OPTIONS[a].flag}`);
  }
}

/** The run options every data plane (each worker's too) applies to all services. */
export function proxySettings(options: RunOptions): ProxySettings {
  return { maxRequestBody: options.maxRequestBody, publishHealthCheck: options.publishHealthCheck };
}

/** The README's table of run options (checked against these declarations by config.test.ts). */
export function runTableMarkdown(): string {
  const rows = Object.values(RUN_OPTIONS).map((f: RunField) => {
    const term = f.kind === "boolean" ? `--${f.flag}` : `--${f.flag} ${f.hint ?? "VALUE"}`;
    const env = f.env.length ? `\`${f.env.at(-1)}\`` : "";
    return `| \`${term}\` | ${env} | ${f.shownDefault} | ${f.help}${f.kind === "list" ? " (repeatable)" : ""} |`;
  });
  return ["| flag | env | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}
