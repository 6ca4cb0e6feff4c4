// The status page's JSON, read the way a script or the page reads it: from
// /status.json, or from the first event of /events.
import { waitFor } from "./proxy.ts";

export interface StatusTarget {
  address: string;
  state: string;
  role: string;
  lastCheck: string;
  lastCheckAt?: string;
}

export interface StatusService {
  name: string;
  hosts: string[];
  state: string;
  targets: StatusTarget[];
  inFlight: number;
  waiting: number;
  requests: { total: number; errors5xx: number };
  series: { t: number[]; requestRate: (number | null)[] };
  certificates: { host: string; source: string; expiresAt?: string; issuing: boolean; error?: { message: string; at: string } }[];
  history: unknown[];
  [field: string]: unknown;
}

export interface Status {
  pid: number;
  generatedAt: string;
  services: StatusService[];
}

export function statusUrl(port: number, path = "/", host = "127.0.0.1"): string {
  return `http://${host}:${port}${path}`;
}

export async function statusJson(port: number): Promise<Status> {
  const res = await fetch(statusUrl(port, "/status.json"));
  if (res.status !== 200) throw new Error(`/status.json answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as Status;
}

/** Waits until /status.json satisfies `check`, and returns it. */
export function statusWhen(port: number, what: string, check: (status: Status) => boolean, timeoutMs = 15_000): Promise<Status> {
  return waitFor(what, async () => {
    const status = await statusJson(port);
    return check(status) ? status : undefined;
  }, { timeoutMs });
}
