// Memory of a process, read from /proc/<pid>/status (Linux), and a sampler
// that records the peak resident set size while a transfer runs. Plus a
// deadline-bounded poll used by the streaming suites.
import * as fs from "node:fs";
import { waitFor } from "./proxy.ts";

/** Current resident set size (VmRSS) of `pid` in bytes. */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  if (!kb) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

export const MB = 1024 * 1024;

export interface RssReport {
  baseline: number;
  peak: number;
  /** peak - baseline */
  growth: number;
  samples: number;
}

/**
 * Samples the summed VmRSS of `pids()` (a server and its workers) every
 * `intervalMs` from construction until `stop()`. The baseline is the
 * reading at construction.
 */
export class RssSampler {
  readonly baseline: number;
  private peak: number;
  private count = 1;
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    readonly pids: () => number[],
    intervalMs = 50,
  ) {
    this.baseline = pids().reduce((sum, pid) => sum + rssBytes(pid), 0);
    this.peak = this.baseline;
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): number {
    let now = 0;
    try {
      now = this.pids().reduce((sum, pid) => sum + rssBytes(pid), 0);
    } catch {
      return 0; // a process is gone; the test will notice elsewhere
    }
    this.count++;
    if (now > this.peak) this.peak = now;
    return now;
  }

  stop(): RssReport {
    clearInterval(this.timer);
    this.sample();
    return { baseline: this.baseline, peak: this.peak, growth: this.peak - this.baseline, samples: this.count };
  }
}

export function mb(bytes: number): string {
  return `${(bytes / MB).toFixed(1)} MB`;
}

/**
 * Polls `check` until it returns a truthy value (returned) or `timeoutMs`
 * passes (throws, naming `what`). The short pause between polls is the only
 * sleep; the wait is bounded by the condition.
 */
export function until<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, intervalMs = 20): Promise<NonNullable<T>> {
  return waitFor(what, check, { timeoutMs, intervalMs });
}

/** Percentile (0..100) of a list of numbers, nearest-rank. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}
