// Load generators. Each one is a separate process; this module only builds
// its command line and parses what it prints.
// - HTTP/1.1 keep-alive (small, big, https): wrk when installed, else
//   bombardier, else the built-in Bun client (bench/client.ts, plain HTTP only);
// - HTTP/2: h2load;
// - new TLS connections: bench/handshake-client.ts.
import * as path from "node:path";

export interface LoadResult {
  rps: number;
  p50_ms: number;
  p90_ms?: number;
  p99_ms: number;
  requests: number;
  seconds: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** Responses outside 2xx/3xx. */
  non2xx: number;
  /** Bytes received per second (headers included), when the tool reports it. */
  bytes_per_s?: number;
  /** h2load: the negotiated TLS version, cipher and application protocol. */
  tls?: string;
}

export interface LoadSpec {
  url: string;
  connections: number;
  threads: number;
  seconds: number;
  /** Extra request headers, "Name: value". */
  headers?: string[];
  /** Connect here (an IP address) instead of the URL's host, which stays the SNI and Host. */
  connectTo?: string;
}

export interface Command {
  cmd: string[];
  env: Record<string, string>;
}

export interface LoadGenerator {
  tool: "wrk" | "bombardier" | "builtin";
  version: string;
  command(spec: LoadSpec): Command;
  parse(stdout: string): LoadResult;
}

const UNIT_MS: Record<string, number> = { us: 0.001, "µs": 0.001, "μs": 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
/** wrk and bombardier print binary units (1 KB = 1024 B). */
const UNIT_BYTES: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

function toMs(value: string, unit: string): number {
  const factor = UNIT_MS[unit];
  if (factor === undefined) throw new Error(`unknown time unit "${unit}"`);
  return Number(value) * factor;
}

/** `   99%    3.21ms` lines of a latency distribution. */
function percentile(text: string, p: number): number | undefined {
  const m = new RegExp(`^\\s*${p}(?:\\.0+)?%\\s+([\\d.]+)\\s*(us|µs|μs|ms|s|m|h)\\b`, "m").exec(text);
  return m ? toMs(m[1]!, m[2]!) : undefined;
}

function bytesPerSecond(text: string, label: RegExp): number | undefined {
  const m = label.exec(text);
  if (!m) return undefined;
  const factor = UNIT_BYTES[m[2]!.toUpperCase()];
  return factor === undefined ? undefined : Number(m[1]) * factor;
}

function required<T>(value: T | undefined | null, what: string, text: string): T {
  if (value === undefined || value === null || (typeof value === "number" && Number.isNaN(value))) {
    throw new Error(`could not read ${what} from the load generator output:\n${text}`);
  }
  return value;
}

export function parseWrk(text: string): LoadResult {
  const rps = Number(/^Requests\/sec:\s+([\d.]+)/m.exec(text)?.[1] ?? NaN);
  const total = /^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)/m.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0);
  const result: LoadResult = {
    rps: required(rps, "Requests/sec", text),
    p50_ms: required(percentile(text, 50), "the 50% latency", text),
    p90_ms: percentile(text, 90),
    p99_ms: required(percentile(text, 99), "the 99% latency", text),
    requests: Number(required(total, "the request count", text)[1]),
    seconds: toMs(total![2]!, total![3]!) / 1000,
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    non2xx,
  };
  const bytes = bytesPerSecond(text, /^Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB|TB)/m);
  if (bytes !== undefined) result.bytes_per_s = bytes;
  return result;
}

/** bombardier's text report (`--latencies --print=result`). */
export function parseBombardier(text: string): LoadResult {
  const rps = Number(/Reqs\/sec\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  const codes = /1xx - (\d+), 2xx - (\d+), 3xx - (\d+), 4xx - (\d+), 5xx - (\d+)/.exec(text);
  const others = Number(/others - (\d+)/.exec(text)?.[1] ?? 0);
  const counts = required(codes, "the HTTP code counts", text).slice(1).map(Number) as [number, number, number, number, number];
  const requests = counts.reduce((a, b) => a + b, 0);
  const rounded = required(rps, "Reqs/sec", text);
  const result: LoadResult = {
    rps: rounded,
    p50_ms: required(percentile(text, 50), "the 50% latency", text),
    p90_ms: percentile(text, 90),
    p99_ms: required(percentile(text, 99), "the 99% latency", text),
    requests,
    seconds: rounded > 0 ? requests / rounded : 0,
    errors: others,
    non2xx: counts[0] + counts[3] + counts[4],
  };
  const bytes = bytesPerSecond(text, /Throughput:\s+([\d.]+)(B|KB|MB|GB|TB)\/s/);
  if (bytes !== undefined) result.bytes_per_s = bytes;
  return result;
}

/** The JSON line of bench/client.ts and bench/handshake-client.ts. */
export function parseJsonLine(text: string): LoadResult {
  const line = text.trim().split("\n").at(-1) ?? "";
  const r = JSON.parse(line) as Record<string, number>;
  const result: LoadResult = {
    rps: r.rps!,
    p50_ms: r.p50_ms!,
    p90_ms: r.p90_ms,
    p99_ms: r.p99_ms!,
    requests: r.requests!,
    seconds: r.seconds!,
    errors: r.errors!,
    non2xx: r.non2xx!,
  };
  if (typeof r.bytes === "number" && r.seconds) result.bytes_per_s = r.bytes / r.seconds;
  return result;
}

async function versionOf(cmd: string[]): Promise<string> {
  try {
    const proc = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", timeout: 5000 });
    const out = (proc.stdout.toString() + proc.stderr.toString()).trim();
    return out.split("\n")[0] ?? "";
  } catch {
    return "";
  }
}

const WRK_CONNECT_TO_SCRIPT = path.join(import.meta.dir, "wrk-connect-to.lua");

function wrkCommand(wrk: string, spec: LoadSpec): Command {
  const cmd = [wrk, `-t${spec.threads}`, `-c${spec.connections}`, `-d${spec.seconds}s`, "--latency"];
  for (const h of spec.headers ?? []) cmd.push("-H", h);
  if (spec.connectTo) cmd.push("-s", WRK_CONNECT_TO_SCRIPT);
  cmd.push(spec.url);
  return { cmd, env: spec.connectTo ? { WRK_CONNECT_TO: spec.connectTo } : {} };
}

/** Picks the HTTP/1.1 load generator: BENCH_LOADGEN=wrk|bombardier|builtin forces one. */
export async function chooseLoadGenerator(forced: string | undefined): Promise<LoadGenerator> {
  const wanted = forced?.trim().toLowerCase() || undefined;
  if (wanted && !["wrk", "bombardier", "builtin"].includes(wanted)) {
    throw new Error(`BENCH_LOADGEN must be wrk, bombardier or builtin (got "${forced}")`);
  }
  const wrk = Bun.which("wrk");
  if (wrk && (!wanted || wanted === "wrk")) {
    return {
      tool: "wrk",
      version: (await versionOf([wrk, "-v"])).replace(/\s+Copyright.*$/, "").replace(/^wrk\s+/, ""),
      command: (spec) => wrkCommand(wrk, spec),
      parse: parseWrk,
    };
  }
  const bombardier = Bun.which("bombardier");
  if (bombardier && (!wanted || wanted === "bombardier")) {
    return {
      tool: "bombardier",
      version: await versionOf([bombardier, "--version"]),
      command: (spec) => ({
        cmd: [bombardier, "-c", String(spec.connections), "-d", `${spec.seconds}s`, "--latencies", "--print=result", ...(spec.headers ?? []).flatMap((h) => ["-H", h]), spec.url],
        env: {},
      }),
      parse: parseBombardier,
    };
  }
  if (wanted && wanted !== "builtin") throw new Error(`BENCH_LOADGEN=${wanted}, but ${wanted} is not installed`);
  return {
    tool: "builtin",
    version: `bench/client.ts on bun ${Bun.version}`,
    command: (spec) => ({ cmd: [process.execPath, path.join(import.meta.dir, "client.ts"), spec.url, String(spec.connections), String(spec.seconds)], env: {} }),
    parse: parseJsonLine,
  };
}

// ---------------------------------------------------------------- h2load

export interface H2Spec {
  url: string;
  connectTo: string;
  clients: number;
  streams: number;
  seconds: number;
  /** Per-request log (h2load --log-file), for the latency percentiles h2load does not print. */
  logFile: string;
}

export function h2loadCommand(h2load: string, spec: H2Spec): Command {
  // The URL's port, read as text: the report prints example commands with "PORT" in it.
  const port = /:([^:/]+)\//.exec(spec.url.slice(8))?.[1] ?? "443";
  return {
    cmd: [h2load, `-c${spec.clients}`, `-m${spec.streams}`, "-t1", "-D", String(spec.seconds), `--connect-to=${spec.connectTo}:${port}`, `--log-file=${spec.logFile}`, spec.url],
    env: {},
  };
}

/** Latency percentiles from h2load's log: "start µs\tstatus\tduration µs" per request. */
function h2Percentiles(log: string): { p50: number; p90: number; p99: number } {
  const durations = log
    .split("\n")
    .map((line) => Number(line.split("\t")[2]))
    .filter((d) => Number.isFinite(d))
    .sort((a, b) => a - b);
  const at = (p: number) => (durations.length ? durations[Math.min(durations.length - 1, Math.floor((p / 100) * durations.length))]! / 1000 : NaN);
  return { p50: at(50), p90: at(90), p99: at(99) };
}

export function parseH2load(text: string, log: string): LoadResult {
  const finished = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s, ([\d.]+)(B|KB|MB|GB)\/s/.exec(text);
  const requests = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(text);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
  const f = required(finished, "the finished line", text);
  const r = required(requests, "the requests line", text).slice(1).map(Number);
  const c = required(codes, "the status codes", text).slice(1).map(Number);
  const tls = ["TLS Protocol", "Cipher", "Application protocol"].map((k) => new RegExp(`^${k}: (.+)$`, "m").exec(text)?.[1]).filter(Boolean);
  const p = h2Percentiles(log);
  return {
    rps: Number(f[3]),
    p50_ms: p.p50,
    p90_ms: p.p90,
    p99_ms: p.p99,
    requests: r[3]!,
    seconds: toMs(f[1]!, f[2]!) / 1000,
    // h2load's "failed" includes "errored" and "timeout"; non-2xx/3xx answers are succeeded requests.
    errors: r[4]!,
    non2xx: c[2]! + c[3]!,
    bytes_per_s: Number(f[4]) * (UNIT_BYTES[f[5]!] ?? 1),
    ...(tls.length ? { tls: tls.join(", ") } : {}),
  };
}

// ---------------------------------------------------------------- handshakes

export interface HandshakeSpec {
  port: number | string;
  serverName: string;
  path: string;
  connections: number;
  seconds: number;
}

export function handshakeCommand(spec: HandshakeSpec): Command {
  return {
    cmd: [process.execPath, path.join(import.meta.dir, "handshake-client.ts"), String(spec.port), spec.serverName, spec.path, String(spec.connections), String(spec.seconds)],
    env: { NODE_ENV: "production" },
  };
}
