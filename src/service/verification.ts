// The verify window of a deploy (README "History and rollback", automatic
// rollback): after the switch, the new targets' answers are counted for a
// while, and too many errors send the traffic back to the previous targets.
// Here: what is counted per target (a Tally, kept by the data plane where a
// request's outcome is known), and the window itself, which polls the counts,
// reports them as progress and says whether the limit was passed. The switch
// and the switch back are the registry's.
import { formatDuration } from "../values.ts";
import type { Progress } from "./command-error.ts";

/** A request a new target failed: what the client got, for which path (and the proxy's reason, when it made the status). */
export interface Failure {
  status: number;
  path: string;
  reason?: string;
}

export interface Tally {
  requests: number;
  /** 5xx answers, the target's or the proxy's (it could not connect, it timed out). */
  errors: number;
  /** The first failures, oldest first (at most FIRST_FAILURES). */
  failures: Failure[];
}

/** How many failing requests a tally keeps, and an error message names. */
export const FIRST_FAILURES = 5;

export const emptyTally = (): Tally => ({ requests: 0, errors: 0, failures: [] });

/**
 * The counts of one target during one window (`window` numbers it, so that a
 * worker that is sent the same window again keeps counting). A request the
 * client gave up on (499) says nothing about the target and is not counted.
 */
export class TargetTally implements Tally {
  requests = 0;
  errors = 0;
  readonly failures: Failure[] = [];

  constructor(readonly window: number) {}

  record(status: number, path: string, reason?: string) {
    if (status === 499) return;
    this.requests++;
    if (status < 500) return;
    this.errors++;
    if (this.failures.length < FIRST_FAILURES) this.failures.push(reason ? { status, path, reason } : { status, path });
  }

  toJSON(): Tally {
    return { requests: this.requests, errors: this.errors, failures: [...this.failures] };
  }
}

/** The counts of several targets (or several workers) as one. */
export function sumTallies(tallies: Iterable<Tally | undefined>): Tally {
  const sum = emptyTally();
  for (const t of tallies) {
    if (!t) continue;
    sum.requests += t.requests;
    sum.errors += t.errors;
    for (const f of t.failures) if (sum.failures.length < FIRST_FAILURES) sum.failures.push(f);
  }
  return sum;
}

/** `--verify-window`, `--verify-max-errors`, `--verify-min-requests`. */
export interface VerifyPolicy {
  windowMs: number;
  /** The error rate (percent of requests) above which the deploy is undone. */
  maxErrorPercent: number;
  /** Below this many requests no rate is judged. */
  minRequests: number;
}

/** Defaults of the two limits (README "History and rollback"). */
export const DEFAULT_MAX_ERROR_PERCENT = 5;
export const DEFAULT_MIN_REQUESTS = 20;

export const errorPercent = (t: Tally) => (t.requests ? (t.errors / t.requests) * 100 : 0);

/** Rounded for people: 0.6%, 20%, 0.04%. */
export function formatPercent(percent: number): string {
  const digits = percent >= 1 || percent === 0 ? 1 : 2;
  return `${Number(percent.toFixed(digits))}%`;
}

/** Is the tally over the policy's limit, with enough requests seen? */
export function overLimit(t: Tally, policy: VerifyPolicy): boolean {
  return t.requests >= policy.minRequests && errorPercent(t) > policy.maxErrorPercent;
}

export function describeTally(t: Tally): string {
  return `${t.requests} request${t.requests === 1 ? "" : "s"}, ${t.errors} error${t.errors === 1 ? "" : "s"} (${formatPercent(errorPercent(t))})`;
}

export function describeFailures(failures: readonly Failure[]): string {
  return failures.map((f) => `${f.status} ${f.path}${f.reason ? ` (${f.reason})` : ""}`).join(", ");
}

/** How often the counts are read: the switch back comes within this of the limit being passed. */
export const POLL_MS = 250;

const END_SLACK_MS = 5;

/** How often the window reports its counts: every second, every 5 seconds in windows over a minute. */
export const reportEveryMs = (windowMs: number) => (windowMs > 60_000 ? 5_000 : 1_000);

export type WindowOutcome = { passed: true; tally: Tally } | { passed: false; tally: Tally };

/**
 * Watches a window: reads the counts every POLL_MS (`count`), reports them
 * (`Verifying web-2:3000: 12s left, 340 requests, 2 errors (0.6%)`), and
 * ends early, not passed, as soon as they are over the limit; otherwise it
 * passes at the end of the window, after a last read.
 */
export async function watchWindow(label: string, policy: VerifyPolicy, count: () => Promise<Tally>, progress: Progress): Promise<WindowOutcome> {
  const started = performance.now();
  const end = started + policy.windowMs;
  const every = reportEveryMs(policy.windowMs);
  let nextReport = started + every;
  for (;;) {
    const now = performance.now();
    const wait = Math.min(POLL_MS, end - now);
    if (wait > 0) await Bun.sleep(wait);
    const tally = await count();
    if (overLimit(tally, policy)) return { passed: false, tally };
    const at = performance.now();
    // A timer may fire a little early: within a few ms of the end is the end.
    if (at >= end - END_SLACK_MS) return { passed: true, tally };
    if (at >= nextReport) {
      const left = Math.max(1, Math.ceil((end - at) / 1000));
      progress(`Verifying ${label}: ${formatDuration(left * 1000)} left, ${describeTally(tally)}`);
      // The next whole interval from the start (a slow read skips a report rather than doubling one).
      nextReport = started + (Math.floor((at - started) / every) + 1) * every;
    }
  }
}
