// Prometheus metrics (README "Logs and metrics"), rendered in the text exposition format.
// Counters and histograms are kept here; gauges that can be derived (target
// health, in-flight requests) are read from the registry at scrape time.

type Labels = Record<string, string>;

interface HistogramSample {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}

/** A worker's request series and in-flight counts, which the control plane sums (README "Workers"). */
export interface RequestSamples {
  requests: { labels: Labels; value: number }[];
  durations: HistogramSample[];
  inFlight: ServiceLoad[];
}

/** Per service: requests being proxied, and requests waiting for a paused service. */
export interface ServiceLoad {
  service: string;
  value: number;
  paused: number;
}

export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DEPLOY_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

function escape(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  /** Label sets by a cheap caller-built key, so the hot path never formats labels. */
  private readonly byKey = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Labels, by = 1, key?: string) {
    let entry = key === undefined ? undefined : this.byKey.get(key);
    if (!entry) {
      const text = labelText(labels);
      entry = this.values.get(text);
      if (!entry) this.values.set(text, (entry = { labels, value: 0 }));
      if (key !== undefined) this.byKey.set(key, entry);
    }
    entry.value += by;
  }

  /** Every series and its value, to be summed with another process's (workers). */
  samples(): { labels: Labels; value: number }[] {
    return [...this.values.values()].map(({ labels, value }) => ({ labels, value }));
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${value}`);
    return lines;
  }
}

class Histogram {
  private readonly series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  private readonly byKey = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: number[],
  ) {}

  private entry(labels: Labels, key?: string) {
    let entry = key === undefined ? undefined : this.byKey.get(key);
    if (!entry) {
      const text = labelText(labels);
      entry = this.series.get(text);
      if (!entry) this.series.set(text, (entry = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
      if (key !== undefined) this.byKey.set(key, entry);
    }
    return entry;
  }

  observe(labels: Labels, value: number, key?: string) {
    const entry = this.entry(labels, key);
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) entry.counts[i]!++;
    entry.sum += value;
    entry.count++;
  }

  samples(): HistogramSample[] {
    return [...this.series.values()].map(({ labels, counts, sum, count }) => ({ labels, counts: [...counts], sum, count }));
  }

  /** Adds another process's series (same buckets) to this one's. */
  add(sample: HistogramSample) {
    const entry = this.entry(sample.labels);
    sample.counts.forEach((n, i) => (entry.counts[i]! += n));
    entry.sum += sample.sum;
    entry.count += sample.count;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const { labels, counts, sum, count } of this.series.values()) {
      this.buckets.forEach((le, i) => lines.push(`${this.name}_bucket${labelText({ ...labels, le: String(le) })} ${counts[i]}`));
      lines.push(`${this.name}_bucket${labelText({ ...labels, le: "+Inf" })} ${count}`);
      lines.push(`${this.name}_sum${labelText(labels)} ${sum}`);
      lines.push(`${this.name}_count${labelText(labels)} ${count}`);
    }
    return lines;
  }
}

function gauge(name: string, help: string, samples: { labels: Labels; value: number }[]): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...samples.map((s) => `${name}${labelText(s.labels)} ${s.value}`)];
}

export interface GaugeSource {
  inFlight(): ServiceLoad[];
  targetHealth(): { service: string; target: string; state: string }[];
  certificateExpiry(): { host: string; expiresAt: number }[];
}

export class Metrics {
  readonly requests = new Counter("parachute_requests_total", "Proxied requests by service, method and status.");
  readonly requestDuration = new Histogram(
    "parachute_request_duration_seconds",
    "Time from request to the end of the response, by service, method and status.",
    DURATION_BUCKETS,
  );
  readonly deploys = new Counter("parachute_deploys_total", "Deploys by service and result (success or failure).");
  readonly deployDuration = new Histogram("parachute_deploy_duration_seconds", "Deploy duration by service and result.", DEPLOY_BUCKETS);
  source: GaugeSource | undefined;

  recordRequest(service: string, method: string, status: number, seconds: number) {
    const key = `${service}\n${method}\n${status}`;
    let labels = this.requestLabels.get(key);
    if (!labels) this.requestLabels.set(key, (labels = { service, method, status: String(status) }));
    this.requests.inc(labels, 1, key);
    this.requestDuration.observe(labels, seconds, key);
  }

  /** Label sets of the request series by key, made once per series rather than per request. */
  private readonly requestLabels = new Map<string, Labels>();

  recordDeploy(service: string, ok: boolean, seconds: number) {
    const labels = { service, result: ok ? "success" : "failure" };
    this.deploys.inc(labels);
    this.deployDuration.observe(labels, seconds);
  }

  /** This process's request series, for the control plane to sum. */
  requestSamples(): RequestSamples {
    return { requests: this.requests.samples(), durations: this.requestDuration.samples(), inFlight: this.source?.inFlight() ?? [] };
  }

  /**
   * The exposition text. With workers, `workers` holds each one's request
   * series: they are summed, series by series, into the totals shown.
   */
  render(workers?: RequestSamples[]): string {
    const requests = workers ? sumRequests(workers) : this;
    const lines = [...requests.requests.render(), ...requests.requestDuration.render()];
    const source = this.source;
    if (source) {
      const inFlight = workers ? sumInFlight(workers) : source.inFlight();
      lines.push(
        ...gauge(
          "parachute_requests_in_flight",
          "Requests being proxied now, by service.",
          inFlight.map((s) => ({ labels: { service: s.service }, value: s.value })),
        ),
        ...gauge(
          "parachute_requests_paused",
          "Requests waiting for a paused service to resume, by service.",
          inFlight.map((s) => ({ labels: { service: s.service }, value: s.paused })),
        ),
        ...gauge(
          "parachute_target_healthy",
          "1 when a target is healthy and in rotation, else 0; state gives adding/healthy/unhealthy/draining.",
          source.targetHealth().map((t) => ({ labels: { service: t.service, target: t.target, state: t.state }, value: t.state === "healthy" ? 1 : 0 })),
        ),
        ...gauge(
          "parachute_certificate_expiry_timestamp_seconds",
          "Expiry time of the certificate served for each host (unix seconds).",
          source.certificateExpiry().map((c) => ({ labels: { host: c.host }, value: Math.floor(c.expiresAt / 1000) })),
        ),
      );
    }
    lines.push(...this.deploys.render(), ...this.deployDuration.render());
    return lines.join("\n") + "\n";
  }
}

export function sumRequests(workers: RequestSamples[]): Metrics {
  const total = new Metrics();
  for (const worker of workers) {
    for (const sample of worker.requests) total.requests.inc(sample.labels, sample.value);
    for (const sample of worker.durations) total.requestDuration.add(sample);
  }
  return total;
}

export function sumInFlight(workers: RequestSamples[]): ServiceLoad[] {
  const byService = new Map<string, ServiceLoad>();
  for (const worker of workers) {
    for (const { service, value, paused } of worker.inFlight) {
      const total = byService.get(service) ?? { service, value: 0, paused: 0 };
      total.value += value;
      total.paused += paused;
      byService.set(service, total);
    }
  }
  return [...byService.values()];
}

export const metrics = new Metrics();
