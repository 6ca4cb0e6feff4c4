// The admin API's request bodies. The CLI validates its flags with these same
// schemas before it sends anything, and the server validates again on arrival,
// so a bad value is named the same way wherever it comes from.
import * as v from "valibot";
import { duration, field, requestEntries, SERVICE_OPTIONS, type Field } from "../service/options.ts";
import { DEFAULT_MAX_ERROR_PERCENT, DEFAULT_MIN_REQUESTS } from "../service/verification.ts";
import { booleanSchema, countSchema, durationSchema, listSchema as list, percentSchema, positiveDurationSchema, targetSchema } from "../values.ts";

export const serviceNameSchema = v.pipe(
  v.string("expected a service name"),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, (issue) => `invalid service name "${issue.input}" (letters, digits, . _ -)`),
);

const targets = v.pipe(list(targetSchema), v.minLength(1, "at least one target is required"));

/** What a deploy takes besides the service's options. */
export const DEPLOY_PARAMETERS = {
  targets: field({
    flag: "target",
    kind: "list",
    input: targets,
    required: true,
    help: "target HOST:PORT; several are load-balanced",
    hint: "HOST:PORT",
  }),
  readTargets: field({ flag: "read-target", kind: "list", input: list(targetSchema), default: [], help: "target(s) for GET/HEAD requests", hint: "HOST:PORT" }),
  deployTimeout: duration("deploy-timeout", "30s", "max wait for new targets to become healthy"),
  force: field({ flag: "force", kind: "boolean", input: booleanSchema, default: false, help: "skip waiting for health checks" }),
  verifyWindow: { ...duration("verify-window", "0", "after the switch, watch the new targets this long; switch back to the old ones if they fail"), shownDefault: "0 (off)" },
  // No schema default for the two limits: given without --verify-window they are an error, not ignored.
  verifyMaxErrors: field({
    flag: "verify-max-errors",
    kind: "value",
    input: percentSchema,
    help: "switch back when over this share of the new targets' answers are 5xx or failed connections",
    hint: "PERCENT",
    shownDefault: `${DEFAULT_MAX_ERROR_PERCENT}%`,
  }),
  verifyMinRequests: field({
    flag: "verify-min-requests",
    kind: "value",
    input: countSchema,
    help: "judge the error rate only once this many requests reached the new targets",
    hint: "N",
    shownDefault: String(DEFAULT_MIN_REQUESTS),
  }),
};

/**
 * A request body: a field it does not know is an error naming it, never
 * dropped in silence (a misspelt `basicAuthFile` would deploy the service
 * open).
 */
function body<E extends v.ObjectEntries>(entries: E) {
  return v.strictObject(entries, (issue) => (issue.expected === "never" ? "unknown field" : issue.message));
}

export const DeployRequest = body({
  service: serviceNameSchema,
  ...requestEntries(DEPLOY_PARAMETERS),
  ...requestEntries(SERVICE_OPTIONS),
});
export type DeployRequest = v.InferOutput<typeof DeployRequest>;

/** A service option a rollback may set; left out, it stays what the service has. */
function keptUnlessGiven<I extends v.GenericSchema, S extends v.GenericSchema>(f: Field<I, S, unknown>, help = f.help): Field<I, S, undefined> & { required: false } {
  return { ...f, help, default: undefined, shownDefault: "the service's", required: false };
}

/** The service options a rollback takes: the deploy's timing and health-check ones (README "History and rollback"). */
export const ROLLBACK_OPTIONS = {
  drainTimeout: keptUnlessGiven(SERVICE_OPTIONS.drainTimeout, "max time the current targets get to finish in-flight requests"),
  healthCheckPath: keptUnlessGiven(SERVICE_OPTIONS.healthCheckPath),
  healthCheckInterval: keptUnlessGiven(SERVICE_OPTIONS.healthCheckInterval),
  healthCheckTimeout: keptUnlessGiven(SERVICE_OPTIONS.healthCheckTimeout),
  healthCheckPort: keptUnlessGiven(SERVICE_OPTIONS.healthCheckPort),
  healthCheckHost: keptUnlessGiven(SERVICE_OPTIONS.healthCheckHost),
};

export const ROLLBACK_PARAMETERS = {
  deployTimeout: { ...DEPLOY_PARAMETERS.deployTimeout, help: "max wait for the previous deploy's targets to become healthy" },
  ...ROLLBACK_OPTIONS,
};

export const RollbackRequest = body({
  service: serviceNameSchema,
  ...requestEntries(ROLLBACK_PARAMETERS),
});
export type RollbackRequest = v.InferOutput<typeof RollbackRequest>;

export const TargetsRequest = body({
  service: serviceNameSchema,
  targets,
  deployTimeout: v.optional(durationSchema, "30s"),
  drainTimeout: v.optional(durationSchema),
});
export type TargetsRequest = v.InferOutput<typeof TargetsRequest>;

export const ServiceRequest = body({
  service: serviceNameSchema,
  drainTimeout: v.optional(durationSchema),
});
export type ServiceRequest = v.InferOutput<typeof ServiceRequest>;

export const PauseRequest = body({
  service: serviceNameSchema,
  drainTimeout: v.optional(durationSchema, "30s"),
  maxPause: v.optional(durationSchema, "30s"),
});
export type PauseRequest = v.InferOutput<typeof PauseRequest>;

export const StopRequest = body({
  service: serviceNameSchema,
  drainTimeout: v.optional(durationSchema, "30s"),
  message: v.optional(v.pipe(v.string(), v.maxLength(1000, "message is too long (max 1000 characters)")), ""),
});
export type StopRequest = v.InferOutput<typeof StopRequest>;

export const RolloutSetRequest = body({
  service: serviceNameSchema,
  percent: v.optional(
    v.pipe(
      v.union([v.string(), v.number()], "expected a percentage"),
      v.check((n) => /^\d{1,3}$/.test(String(n).trim()) && Number(n) <= 100, (issue) => `invalid percent "${issue.input}" (expected 0-100)`),
      v.transform(Number),
    ),
    0,
  ),
  list: v.optional(list(v.pipe(v.string(), v.nonEmpty("empty cookie value"))), []),
});
export type RolloutSetRequest = v.InferOutput<typeof RolloutSetRequest>;

export const UpgradeRequest = body({
  // 0 would make every upgrade fail: the new server can never be ready in no time.
  readyTimeout: v.optional(positiveDurationSchema("the new server needs more than 0s to start"), "30s"),
  drainTimeout: v.optional(durationSchema, "30s"),
});
export type UpgradeRequest = v.InferOutput<typeof UpgradeRequest>;
