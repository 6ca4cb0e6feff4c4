// The status page's charts (README "Status page"): per service, the request
// rate, the 5xx rate, p50/p99 latency and in-flight requests over the last
// minutes. They are computed from the same counters and histograms /metrics
// renders (with workers, summed from every worker's samples), read on a timer
// that runs only while someone looks: an open event stream or a recent poll of
// /status.json. Nobody looking, no timer and no reads (docs/design.md
// "The status page").
import { DURATION_BUCKETS, sumInFlight, sumRequests, type RequestSamples } from "../metrics.ts";

/** One service's cumulative counts at one moment, as /metrics would show them. */
export interface ServiceTotals {
  requests: number;
  errors: number;
  /** Cumulative histogram bucket counts (DURATION_BUCKETS), all methods and statuses summed. */
  buckets: number[];
  /** Requests the histogram has seen (its +Inf bucket). */
  observed: number;
  inFlight: number;
  /** Requests held by a paused service. */
  waiting: number;
}

/** Every service's totals at `at` (ms since the epoch). */
export interface Reading {
  at: number;
  services: Map<string, ServiceTotals>;
}

/** One chart point: rates per second and latencies in seconds over the interval that ended at `t`; null where there is no value. */
export interface Point {
  t: number;
  requestRate: number | null;
  errorRate: number | null;
  p50: number | null;
  p99: number | null;
  inFlight: number;
}

export interface SamplerSettings {
  /** How often the timer reads while someone looks (the page's refresh rate). */
  tickMs: number;
  /** The interval each chart point covers. */
  pointMs: number;
  /** How far back the charts go. */
  windowMs: number;
  /** How long a poll of /status.json keeps the timer going. */
  pollGraceMs: number;
}

export const DEFAULT_SAMPLING: SamplerSettings = { tickMs: 1_000, pointMs: 5_000, windowMs: 5 * 60_000, pollGraceMs: 10_000 };

const emptyTotals = (): ServiceTotals => ({ requests: 0, errors: 0, buckets: DURATION_BUCKETS.map(() => 0), observed: 0, inFlight: 0, waiting: 0 });

/** Sums the samples (one per process carrying traffic) into per-service totals. */
export function readingOf(samples: RequestSamples[], at: number): Reading {
  const services = new Map<string, ServiceTotals>();
  const of = (name: string) => services.get(name) ?? services.set(name, emptyTotals()).get(name)!;
  const sum = sumRequests(samples);
  for (const { labels, value } of sum.requests.samples()) {
    const totals = of(labels.service!);
    totals.requests += value;
    if (labels.status?.startsWith("5")) totals.errors += value;
  }
  for (const { labels, counts, count } of sum.requestDuration.samples()) {
    const totals = of(labels.service!);
    counts.forEach((n, i) => (totals.buckets[i]! += n));
    totals.observed += count;
  }
  for (const { service, value, paused } of sumInFlight(samples)) {
    const totals = of(service);
    totals.inFlight = value;
    totals.waiting = paused;
  }
  return { at, services };
}

/**
 * The q-quantile of observations given as cumulative bucket counts (upper
 * bounds `bounds`) and their total, interpolated linearly within the bucket
 * it falls in, as Prometheus' histogram_quantile does; above the last bound
 * it is that bound. Null without observations.
 */
export function quantile(q: number, cumulative: number[], total: number, bounds = DURATION_BUCKETS): number | null {
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    if (cumulative[i]! < rank) continue;
    const lower = i === 0 ? 0 : bounds[i - 1]!;
    const below = i === 0 ? 0 : cumulative[i - 1]!;
    const inBucket = cumulative[i]! - below;
    return inBucket > 0 ? lower + ((bounds[i]! - lower) * (rank - below)) / inBucket : lower;
  }
  return bounds.at(-1)!;
}

/** The point for the interval between two readings of a service; null rates if the counters went back (a worker restarted). */
export function pointBetween(before: ServiceTotals | undefined, after: ServiceTotals, seconds: number, t: number): Point {
  const base = before ?? emptyTotals();
  const requests = after.requests - base.requests;
  const errors = after.errors - base.errors;
  const buckets = after.buckets.map((n, i) => n - base.buckets[i]!);
  const observed = after.observed - base.observed;
  if (requests < 0 || errors < 0 || observed < 0 || buckets.some((n) => n < 0)) return { t, requestRate: null, errorRate: null, p50: null, p99: null, inFlight: after.inFlight };
  return {
    t,
    requestRate: requests / seconds,
    errorRate: errors / seconds,
    p50: quantile(0.5, buckets, observed),
    p99: quantile(0.99, buckets, observed),
    inFlight: after.inFlight,
  };
}

export class TrafficSampler {
  private readonly points = new Map<string, Point[]>();
  /** The reading the next point is measured from. */
  private baseline: Reading | undefined;
  private reading: Promise<Reading> | undefined;
  private watchers = 0;
  private lastPollAt = Number.NEGATIVE_INFINITY;
  private timer: ReturnType<typeof setInterval> | undefined;
  private listeners = new Set<(reading: Reading) => void>();
  /** Reads made so far (the cost when nobody looks is checked with it). */
  reads = 0;

  constructor(
    private readonly read: () => Promise<RequestSamples[]>,
    readonly settings: SamplerSettings = DEFAULT_SAMPLING,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the timer runs now. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** An event stream opened: the timer runs until every one is released. */
  watch(): () => void {
    this.watchers++;
    this.startTimer();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.watchers--;
    };
  }

  /** A poll of /status.json: the timer runs for the grace, so the next poll finds charts up to date. */
  polled() {
    this.lastPollAt = this.now();
    this.startTimer();
  }

  /** Calls `listener` with each reading the timer makes, until the returned function is called. */
  onReading(listener: (reading: Reading) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads now (one read at a time: callers meanwhile share it) and records a chart point when one is due. */
  sample(): Promise<Reading> {
    this.reading ??= this.read()
      .then((samples) => this.record(readingOf(samples, this.now())))
      .finally(() => (this.reading = undefined));
    return this.reading;
  }

  /** The chart points of a service, oldest first, within the window. */
  series(service: string): Point[] {
    const from = this.now() - this.settings.windowMs;
    return (this.points.get(service) ?? []).filter((p) => p.t >= from);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private get watched(): boolean {
    return this.watchers > 0 || this.now() - this.lastPollAt < this.settings.pollGraceMs;
  }

  private startTimer() {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.settings.tickMs);
  }

  private async tick() {
    if (!this.watched) return this.stop();
    const reading = await this.sample().catch(() => undefined);
    if (reading) for (const listener of this.listeners) listener(reading);
  }

  private record(reading: Reading): Reading {
    this.reads++;
    const base = this.baseline;
    const elapsed = base ? reading.at - base.at : Number.POSITIVE_INFINITY;
    if (elapsed < this.settings.pointMs) return reading;
    this.baseline = reading;
    // After a time nobody looked, the first reading only starts a new baseline:
    // its difference spans the whole gap, which the charts leave blank.
    if (!base || elapsed > 3 * this.settings.pointMs) return reading;
    const from = reading.at - this.settings.windowMs;
    for (const [service, totals] of reading.services) {
      const list = (this.points.get(service) ?? []).filter((p) => p.t >= from);
      list.push(pointBetween(base.services.get(service), totals, elapsed / 1000, reading.at));
      this.points.set(service, list);
    }
    for (const [service, list] of this.points) if (!reading.services.has(service) && !list.some((p) => p.t >= from)) this.points.delete(service);
    return reading;
  }
}
