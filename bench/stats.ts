// What one measured run records, and the medians over the rounds.
import type { LoadResult } from "./loadgen.ts";
import type { ScenarioId } from "./settings.ts";

export interface Measurement extends LoadResult {
  round: number;
  /** Share of one core used by the proxy's processes during the measured seconds. */
  proxy_cpu_pct?: number;
  /** Proxy CPU time per request (per new connection in the handshake scenario), µs. */
  proxy_cpu_us_per_request?: number;
  backend_cpu_pct?: number;
  /** The load generator's own CPU, % of one core. */
  loadgen_cpu_pct?: number;
  /** Share of all the machine's cores busy during the run (load generator, proxy, backend and anything else). */
  host_busy_pct?: number;
  /** CPU the machine spent outside the benchmark's measured processes, % of one core: other work on a shared machine. */
  others_cpu_pct?: number;
  /** The proxy's RSS right after this run, kB. */
  rss_after_kb?: number;
  log_bytes_per_request?: number;
  /** BENCH_QUIET: seconds waited for an idle machine before this run. */
  quiet_wait_s?: number;
}

export interface Summary {
  /** The scenario's headline number: req/s, MiB/s (big) or new connections/s (handshake). */
  value: number;
  value_min: number;
  value_max: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  non2xx: number;
  mib_per_s?: number;
  proxy_cpu_pct?: number;
  proxy_cpu_us_per_request?: number;
  backend_cpu_pct?: number;
  loadgen_cpu_pct?: number;
  host_busy_pct?: number;
  others_cpu_pct?: number;
  log_bytes_per_request?: number;
  tls?: string;
  /** value / bun-min's value in this scenario. */
  vs_bun_min?: number;
  /** p99 / bun-min's p99 (above 1 is worse). */
  p99_vs_bun_min?: number;
  vs_direct?: number;
}

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const MIB = 1024 * 1024;

/** The number a scenario is judged by. */
export function headline(scenario: ScenarioId, m: LoadResult): number {
  return scenario === "big" ? (m.bytes_per_s ?? NaN) / MIB : m.rps;
}

export function summarize(scenario: ScenarioId, runs: Measurement[]): Summary {
  const of = (k: keyof Measurement) => runs.map((r) => r[k]).filter((v): v is number => typeof v === "number");
  const values = runs.map((r) => headline(scenario, r));
  const summary: Summary = {
    value: median(values),
    value_min: Math.min(...values),
    value_max: Math.max(...values),
    rps: median(of("rps")),
    p50_ms: median(of("p50_ms")),
    p99_ms: median(of("p99_ms")),
    errors: of("errors").reduce((a, b) => a + b, 0),
    non2xx: of("non2xx").reduce((a, b) => a + b, 0),
  };
  const bytes = of("bytes_per_s");
  if (bytes.length) summary.mib_per_s = median(bytes) / MIB;
  for (const k of ["proxy_cpu_pct", "proxy_cpu_us_per_request", "backend_cpu_pct", "loadgen_cpu_pct", "host_busy_pct", "others_cpu_pct", "log_bytes_per_request"] as const) {
    const v = of(k);
    if (v.length) summary[k] = median(v);
  }
  const tls = runs.find((r) => r.tls)?.tls;
  if (tls) summary.tls = tls;
  return summary;
}

/** Fills the ratio fields of every summary of one scenario. */
export function addRatios(summaries: Map<string, Summary>) {
  const base = summaries.get("bun-min");
  const direct = summaries.get("direct");
  for (const s of summaries.values()) {
    if (base) {
      s.vs_bun_min = s.value / base.value;
      s.p99_vs_bun_min = s.p99_ms / base.p99_ms;
    }
    if (direct) s.vs_direct = s.value / direct.value;
  }
}
