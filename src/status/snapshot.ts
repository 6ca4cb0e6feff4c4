// What the status page shows, as one JSON document (README "Status page",
// /status.json): every service as `list` shows it (the same ServiceView), with
// its traffic as /metrics counts it, its charts, its certificates and its
// deploy history as `history --json` gives it.
import { commandLine } from "../cli/history.ts";
import type { HistoryRecord } from "../service/history.ts";
import type { ServiceView } from "../service/view.ts";
import type { TlsHostStatus } from "../tls/manager.ts";
import { VERSION } from "../version.ts";
import type { Point, Reading, TrafficSampler } from "./sampler.ts";

/** A history record as `history --json` gives it, with its command as `history` shows it (`deploy --host a.test`). */
export type HistoryEntry = HistoryRecord & { commandLine: string };

/** The last records the page shows per service (`history SERVICE` has them all). */
export const HISTORY_SHOWN = 10;

export interface StatusSources {
  services(): ServiceView[];
  tlsHosts(): TlsHostStatus[];
  /** A service's history, oldest first. */
  history(service: string): readonly HistoryRecord[];
}

export interface CertificateStatus {
  host: string;
  source: "acme" | "custom";
  expiresAt?: string;
  issuing: boolean;
  error?: { message: string; at: string };
}

/** The charts' points, column by column (t in ms since the epoch; rates per second; latencies in seconds). */
export interface Series {
  t: number[];
  requestRate: (number | null)[];
  errorRate: (number | null)[];
  p50: (number | null)[];
  p99: (number | null)[];
  inFlight: number[];
}

export type ServiceStatus = ServiceView & {
  /** Requests being proxied now, and requests waiting for a paused service (parachute_requests_in_flight, _paused). */
  inFlight: number;
  waiting: number;
  /** Since the start (parachute_requests_total, all of it and its 5xx part). */
  requests: { total: number; errors5xx: number };
  series: Series;
  certificates: CertificateStatus[];
  /** The last HISTORY_SHOWN records, oldest first. */
  history: HistoryEntry[];
};

export interface StatusSnapshot {
  version: string;
  pid: number;
  generatedAt: string;
  sampling: { tickSeconds: number; pointSeconds: number; windowSeconds: number };
  services: ServiceStatus[];
}

const round = (n: number | null, digits = 4) => (n === null ? null : Number(n.toFixed(digits)));

function columns(points: Point[]): Series {
  return {
    t: points.map((p) => p.t),
    requestRate: points.map((p) => round(p.requestRate, 3)),
    errorRate: points.map((p) => round(p.errorRate, 3)),
    p50: points.map((p) => round(p.p50, 6)),
    p99: points.map((p) => round(p.p99, 6)),
    inFlight: points.map((p) => p.inFlight),
  };
}

function certificateStatus(c: TlsHostStatus): CertificateStatus {
  return {
    host: c.host,
    source: c.source,
    issuing: c.issuing,
    ...(c.expiresAt !== undefined ? { expiresAt: new Date(c.expiresAt).toISOString() } : {}),
    ...(c.error ? { error: { message: c.error.message, at: new Date(c.error.at).toISOString() } } : {}),
  };
}

export function statusSnapshot(sources: StatusSources, reading: Reading, sampler: TrafficSampler): StatusSnapshot {
  const tls = new Map(sources.tlsHosts().map((c) => [c.host, c]));
  const ms = (n: number) => n / 1000;
  return {
    version: VERSION,
    pid: process.pid,
    generatedAt: new Date(reading.at).toISOString(),
    sampling: { tickSeconds: ms(sampler.settings.tickMs), pointSeconds: ms(sampler.settings.pointMs), windowSeconds: ms(sampler.settings.windowMs) },
    services: sources.services().map((view) => {
      const totals = reading.services.get(view.name);
      return {
        ...view,
        inFlight: totals?.inFlight ?? 0,
        waiting: totals?.waiting ?? 0,
        requests: { total: totals?.requests ?? 0, errors5xx: totals?.errors ?? 0 },
        series: columns(sampler.series(view.name)),
        certificates: view.hosts.flatMap((host) => (tls.has(host) ? [certificateStatus(tls.get(host)!)] : [])),
        history: sources.history(view.name).slice(-HISTORY_SHOWN).map((r) => ({ ...r, commandLine: commandLine(r) })),
      };
    }),
  };
}
