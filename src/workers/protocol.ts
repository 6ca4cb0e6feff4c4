// The messages between the control plane and its workers, over Bun's IPC
// channel (JSON). The control plane numbers every change it sends; a worker
// answers `applied` with the number once the change is live in it.
import * as v from "valibot";
import type { RequestSamples } from "../metrics.ts";
import type { RoutingState } from "../service/routing-state.ts";
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

/** The certificates and ACME challenges workers serve, and the hosts whose order runs. */
export interface TlsState {
  certificates: { host: string; cert: string; key: string }[];
  issuing: string[];
  challenges: [token: string, keyAuthorization: string][];
  /** TLS-ALPN-01 challenge certificates by host (RFC 8737). */
  alpnChallenges: { host: string; cert: string; key: string }[];
}

export type ToWorker =
  | { type: "routing"; change: number; state: RoutingState }
  | { type: "tls"; change: number; state: TlsState }
  | { type: "drain"; id: number; service: string; targets: string[]; timeoutMs: number; leaving: boolean }
  | { type: "samples"; id: number }
  /** The published health check answers 503 from now on (the server is leaving). */
  | { type: "leave" }
  | { type: "stop"; graceMs: number };

export type FromWorker =
  | { type: "hello" }
  | { type: "ready" }
  /** It has drained and is exiting; `graceful` is false when its drain cut what was left. */
  | { type: "stopped"; graceful: boolean }
  | { type: "applied"; change: number }
  | { type: "drained"; id: number; cancelled: number }
  | { type: "samples"; id: number; samples: RequestSamples };
