// The printed tables: one per scenario, and the RSS tables.
import type { Memory } from "./memory.ts";
import type { ScenarioId } from "./settings.ts";
import type { Summary } from "./stats.ts";

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  const rule = "|" + widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|";
  return [line(header), rule, ...rows.map(line)].join("\n");
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "-";
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

const ratio = (r: number | undefined) => (r === undefined || !Number.isFinite(r) ? "-" : `${r.toFixed(2)}×`);
const cpu = (c: number | undefined) => (c === undefined ? "-" : `${Math.round(c)}%`);
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");

/** "52,300 (50.1–53.9k)": the median, and with several rounds the range. */
function valueCell(x: Summary, rounds: number, unit: "k" | "plain"): string {
  if (rounds < 2) return int(x.value);
  const r = (v: number) => (unit === "k" ? `${(v / 1000).toFixed(1)}k` : int(v));
  return `${int(x.value)} (${r(x.value_min)}–${r(x.value_max)})`;
}

export const SCENARIO_TITLES: Record<Exclude<ScenarioId, "rss">, string> = {
  small: "Small responses (3 bytes), HTTP/1.1 keep-alive",
  big: "1 MiB responses, HTTP/1.1 keep-alive",
  https: "HTTPS, HTTP/1.1 keep-alive (3 bytes)",
  handshake: "HTTPS, a new TLS connection per request (3 bytes)",
  h2: "HTTPS, HTTP/2 (3 bytes)",
};

export function scenarioTable(id: Exclude<ScenarioId, "rss">, rows: [string, Summary][], rounds: number): string {
  const med = rounds > 1 ? " (median, range)" : "";
  const errs = (x: Summary) => String(x.errors + x.non2xx);
  switch (id) {
    case "big":
      return table(
        ["target", `MiB/s${med}`, "req/s", "p50", "p99", "errors", "proxy CPU", "others", "vs bun-min", "vs direct"],
        rows.map(([name, x]) => [name, valueCell(x, rounds, "plain"), int(x.rps), fmtMs(x.p50_ms), fmtMs(x.p99_ms), errs(x), cpu(x.proxy_cpu_pct), cpu(x.others_cpu_pct), ratio(x.vs_bun_min), ratio(x.vs_direct)]),
      );
    case "handshake":
      return table(
        ["target", `connections/s${med}`, "p50", "p99", "errors", "proxy CPU", "CPU per connection", "client CPU", "others", "vs bun-min", "CPU/conn vs bun-min"],
        rows.map(([name, x], _i, all) => {
          const base = all.find(([n]) => n === "bun-min")?.[1].proxy_cpu_us_per_request;
          const per = x.proxy_cpu_us_per_request;
          return [name, valueCell(x, rounds, "plain"), fmtMs(x.p50_ms), fmtMs(x.p99_ms), errs(x), cpu(x.proxy_cpu_pct), per === undefined ? "-" : `${Math.round(per)} µs`, cpu(x.loadgen_cpu_pct), cpu(x.others_cpu_pct), ratio(x.vs_bun_min), ratio(per !== undefined && base ? per / base : undefined)];
        }),
      );
    default:
      return table(
        ["target", `req/s${med}`, "p50", "p99", "errors", "proxy CPU", "others", "vs bun-min", "p99 vs bun-min", ...(id === "small" ? ["vs direct"] : [])],
        rows.map(([name, x]) => [name, valueCell(x, rounds, "k"), fmtMs(x.p50_ms), fmtMs(x.p99_ms), errs(x), cpu(x.proxy_cpu_pct), cpu(x.others_cpu_pct), ratio(x.vs_bun_min), ratio(x.p99_vs_bun_min), ...(id === "small" ? [ratio(x.vs_direct)] : [])]),
      );
  }
}

export interface MemoryRecord {
  start?: Memory;
  /** Right after each of its measured runs. */
  after: Memory[];
  settled?: Memory;
}

const mb = (kb: number | undefined) => (kb === undefined ? "-" : `${(kb / 1024).toFixed(1)} MiB`);

/** The highest RSS read right after a run: the state the load left behind. */
export function afterLoad(m: MemoryRecord): Memory | undefined {
  return m.after.reduce<Memory | undefined>((best, x) => (!best || x.rss_kb > best.rss_kb ? x : best), undefined);
}

/** The process's peak RSS (VmHWM) at its last reading. */
function peak(m: MemoryRecord): number | undefined {
  return (m.settled ?? m.after.at(-1) ?? m.start)?.peak_kb;
}

export function memoryTable(rows: [string, MemoryRecord][], withSettled: boolean): string {
  const base = rows.find(([n]) => n === "bun-min")?.[1];
  const baseAfter = base ? afterLoad(base)?.rss_kb : undefined;
  return table(
    ["target", "start", "after load", "peak (VmHWM)", ...(withSettled ? ["settled", "settled vs start"] : []), "after load vs bun-min", "processes"],
    rows.map(([name, m]) => {
      const after = afterLoad(m);
      const settledPct = m.settled && m.start ? `${m.settled.rss_kb >= m.start.rss_kb ? "+" : ""}${(((m.settled.rss_kb - m.start.rss_kb) / m.start.rss_kb) * 100).toFixed(0)}%` : "-";
      return [
        name,
        mb(m.start?.rss_kb),
        mb(after?.rss_kb),
        mb(peak(m)),
        ...(withSettled ? [mb(m.settled?.rss_kb), settledPct] : []),
        ratio(after && baseAfter ? after.rss_kb / baseAfter : undefined),
        String(m.start?.processes ?? "-"),
      ];
    }),
  );
}
