// Load generators: wrk when installed, else bombardier, else the built-in Bun
// client (bench/client.ts). Each one is a separate process; this module only
// builds its command line and parses what it prints.
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
}

export interface LoadGenerator {
  tool: "wrk" | "bombardier" | "builtin";
  version: string;
  command(url: string, connections: number, threads: number, seconds: number): string[];
  parse(stdout: string): LoadResult;
}

const UNIT_MS: Record<string, number> = { us: 0.001, "µs": 0.001, "μs": 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

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
  return {
    rps: required(rps, "Requests/sec", text),
    p50_ms: required(percentile(text, 50), "the 50% latency", text),
    p90_ms: percentile(text, 90),
    p99_ms: required(percentile(text, 99), "the 99% latency", text),
    requests: Number(required(total, "the request count", text)[1]),
    seconds: toMs(total![2]!, total![3]!) / 1000,
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    non2xx,
  };
}

/** bombardier's text report (`--latencies --print=result`). */
export function parseBombardier(text: string): LoadResult {
  const rps = Number(/Reqs\/sec\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  const codes = /1xx - (\d+), 2xx - (\d+), 3xx - (\d+), 4xx - (\d+), 5xx - (\d+)/.exec(text);
  const others = Number(/others - (\d+)/.exec(text)?.[1] ?? 0);
  const counts = required(codes, "the HTTP code counts", text).slice(1).map(Number) as [number, number, number, number, number];
  const requests = counts.reduce((a, b) => a + b, 0);
  const rounded = required(rps, "Reqs/sec", text);
  return {
    rps: rounded,
    p50_ms: required(percentile(text, 50), "the 50% latency", text),
    p90_ms: percentile(text, 90),
    p99_ms: required(percentile(text, 99), "the 99% latency", text),
    requests,
    seconds: rounded > 0 ? requests / rounded : 0,
    errors: others,
    non2xx: counts[0] + counts[3] + counts[4],
  };
}

export function parseBuiltin(text: string): LoadResult {
  const line = text.trim().split("\n").at(-1) ?? "";
  const r = JSON.parse(line) as Record<string, number>;
  return {
    rps: r.rps!,
    p50_ms: r.p50_ms!,
    p90_ms: r.p90_ms,
    p99_ms: r.p99_ms!,
    requests: r.requests!,
    seconds: r.seconds!,
    errors: r.errors!,
    non2xx: r.non2xx!,
  };
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

/** Picks the load generator: BENCH_LOADGEN=wrk|bombardier|builtin forces one. */
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
      command: (url, c, t, s) => [wrk, `-t${t}`, `-c${c}`, `-d${s}s`, "--latency", url],
      parse: parseWrk,
    };
  }
  const bombardier = Bun.which("bombardier");
  if (bombardier && (!wanted || wanted === "bombardier")) {
    return {
      tool: "bombardier",
      version: await versionOf([bombardier, "--version"]),
      command: (url, c, _t, s) => [bombardier, "-c", String(c), "-d", `${s}s`, "--latencies", "--print=result", url],
      parse: parseBombardier,
    };
  }
  if (wanted && wanted !== "builtin") throw new Error(`BENCH_LOADGEN=${wanted}, but ${wanted} is not installed`);
  return {
    tool: "builtin",
    version: `bench/client.ts on bun ${Bun.version}`,
    command: (url, c, _t, s) => [process.execPath, path.join(import.meta.dir, "client.ts"), url, String(c), String(s)],
    parse: parseBuiltin,
  };
}
