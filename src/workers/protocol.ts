// The messages between the control plane and its workers, over Bun's IPC
// channel (JSON). The control plane numbers every change it sends; a worker
// answers `applied` with the number once the change is live in it.
import * as v from "valibot";
import type { RequestSamples } from "../metrics.ts";
import type { RoutingState } from "../service/routing-state.ts";
import type { Tally } from "../service/verification.ts";
import { cidrSchema } from "../proxy/cidr.ts";
import { jsonFromEnv, portSchema, wholeSchema } from "../values.ts";

/** A stopping worker's exit code when its drain had to cut what was left (the `stopped` message may not get out first). */
export const CUT_EXIT_CODE = 3;

/** The environment variable that makes a `run` process a worker, and tells it its sockets. */
export const WORKER_ENV = "PARACHUTE_WORKER";

const fdSchema = v.pipe(v.number(), v.integer(), v.minValue(3));
const WorkerSettingsSchema = v.object({
  /** 1-based, for the logs. */
  index: v.pipe(v.number(), v.integer(), v.minValue(1)),
  httpFd: fdSchema,
  httpsFd: v.optional(fdSchema),
  /** The public HTTPS port, for redirects. */
  httpsPort: portSchema,
  /** The run options every data plane applies (ProxySettings). */
  proxy: v.object({ maxRequestBody: wholeSchema, publishHealthCheck: v.boolean() }),
  /** The senders trusted with PROXY protocol headers (none: any); absent: off. */
  proxyProtocol: v.optional(v.object({ from: v.array(cidrSchema) })),
});
export type WorkerSettings = v.InferOutput<typeof WorkerSettingsSchema>;

/** The worker settings this process was started with, if it is a worker. */
export function inheritedWorkerSettings(env: Record<string, string | undefined> = process.env): WorkerSettings | undefined {
  return jsonFromEnv(WorkerSettingsSchema, WORKER_ENV, env);
}

export interface HostCertificate {
  host: string;
  cert: string;
  key: string;
}

/** The certificates and ACME challenges workers serve, and the hosts whose order runs. */
export interface TlsSnapshot {
  certificates: HostCertificate[];
  issuing: string[];
  challenges: [token: string, keyAuthorization: string][];
  /** TLS-ALPN-01 challenge certificates by host (RFC 8737). */
  alpnChallenges: HostCertificate[];
}

/**
 * What changed since the previous TlsState: certificates are sent when they
 * are new or replaced, so one issuance among 1,000 hosts sends one
 * certificate, not 1,000. `reset` (a worker's first state) replaces
 * everything the worker has.
 */
export interface TlsState {
  reset: boolean;
  /** New or replaced certificates (every one when `reset`). */
  certificates: HostCertificate[];
  /** Hosts whose certificate went. */
  removed: string[];
  issuing: string[];
  challenges: [token: string, keyAuthorization: string][];
  /** TLS-ALPN-01 challenge certificates by host (RFC 8737). */
  alpnChallenges: HostCertificate[];
}

export type ToWorker =
  | { type: "routing"; change: number; state: RoutingState }
  | { type: "tls"; change: number; state: TlsState }
  | { type: "drain"; id: number; service: string; targets: string[]; timeoutMs: number; leaving: boolean }
  | { type: "samples"; id: number }
  /** The control plane's answer to an `on-demand` ask; it comes after the TlsState that shows the order. */
  | { type: "on-demand"; request: number; allowed: boolean }
  /** This worker's counts of the service's verify window. */
  | { type: "tally"; id: number; service: string }
  /** The published health check answers 503 from now on (the server is leaving). */
  | { type: "leave" }
  | { type: "stop"; graceMs: number };

export type FromWorker =
  | { type: "hello" }
  | { type: "ready" }
  /** It has drained and is exiting; `graceful` is false when its drain cut what was left. */
  | { type: "stopped"; graceful: boolean }
  | { type: "applied"; change: number }
  /** A handshake for a host of an on-demand service without a certificate: may it have one (the control plane asks and orders)? */
  | { type: "on-demand"; request: number; host: string; service: string }
  | { type: "drained"; id: number; cancelled: number }
  | { type: "samples"; id: number; samples: RequestSamples }
  | { type: "tally"; id: number; tally: Tally };
