// The service options (README "Configuration"), each declared once: its flag,
// default, help line, the schema a request's value passes (a CLI flag or an
// admin API body), and the schema of the value the state file keeps and the
// proxy uses. The TypeScript type, the admin API schema, the state schema, the
// CLI flags with their help, and the README's flag table all derive from here.
import * as v from "valibot";
import { booleanSchema, durationSchema, hostSchema, listSchema as list, pathPrefixSchema, portSchema, sizeSchema, wholeSchema as whole } from "../values.ts";

/** How a field is given on the command line. */
export type FieldKind = "value" | "boolean" | "list";

/**
 * One request field: `input` validates what a user sends, `stored` what the
 * state file keeps (the canonical form `input` produces: durations and sizes
 * as whole milliseconds and bytes). A field without a default is optional in
 * requests and, unless `stored` allows undefined, always present once stored.
 */
export interface Field<I extends v.GenericSchema = v.GenericSchema, S extends v.GenericSchema = v.GenericSchema, D = unknown> {
  input: I;
  stored: S;
  default: D;
  flag: string;
  kind: FieldKind;
  help: string;
  /** Placeholder in help (`--target HOST:PORT`). */
  hint?: string;
  /** How the default reads in help and README where it is not a literal (`true without TLS`). */
  shownDefault?: string;
  /** A request without it is refused. */
  required?: boolean;
}

type Spec<I extends v.GenericSchema, S extends v.GenericSchema, D, R extends boolean> = Omit<Field<I, S, D>, "stored" | "default" | "required"> & {
  stored?: S;
  default?: D;
  required?: R;
};

export function field<I extends v.GenericSchema, D extends v.InferInput<I> | undefined = undefined, S extends v.GenericSchema = I, R extends boolean = false>(
  spec: Spec<I, S, D, R>,
): Field<I, S, D> & { required: R } {
  return { ...spec, stored: (spec.stored ?? spec.input) as unknown as S, default: spec.default as D, required: (spec.required ?? false) as R };
}

export const duration = (flag: string, defaultValue: string, help: string) =>
  field({ flag, kind: "value", input: durationSchema, stored: whole, default: defaultValue, help, hint: "DURATION" });
const size = (flag: string, defaultValue: string, help: string) =>
  field({ flag, kind: "value", input: sizeSchema, stored: whole, default: defaultValue, help, hint: "SIZE" });
const flag = (name: string, defaultValue: boolean, help: string) =>
  field({ flag: name, kind: "boolean", input: booleanSchema, stored: v.boolean(), default: defaultValue, help });
const optionalText = (name: string, help: string, hint: string) =>
  field({ flag: name, kind: "value", input: v.string(), stored: v.optional(v.string()), help, hint });

/** The ACME challenge types parachute answers (README "TLS"). */
export const TLS_CHALLENGES = ["auto", "http-01", "tls-alpn-01", "dns-01"] as const;
export type TlsChallenge = (typeof TLS_CHALLENGES)[number];

const healthCheckPath = v.pipe(
  v.string(),
  v.regex(/^\/[^\s]*$/, (issue) => `invalid health check path "${issue.input}" (expected a path like /up)`),
);
const headerName = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, (issue) => `invalid header name "${issue.input}"`),
  v.toLowerCase(),
);
/**
 * Where on-demand TLS asks whether a host may have a certificate: a path on
 * the service's own targets (`/allow`) or an absolute http(s) URL, as
 * kamal-proxy takes it (`//host/path` is neither, and refused).
 */
const onDemandUrl = v.pipe(
  v.string(),
  v.check((value) => {
    if (value.startsWith("//")) return false;
    if (value.startsWith("/")) return !/\s/.test(value);
    try {
      const url = new URL(value);
      return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
    } catch {
      return false;
    }
  }, (issue) => `invalid --tls-on-demand-url "${issue.input}" (expected a path like /allow or an http(s) URL)`),
);
/** A health-check interval below 10ms would only load the target; it is raised to 10ms. */
const checkInterval = v.pipe(durationSchema, v.transform((ms) => Math.max(ms, 10)));
const checkTimeout = v.pipe(durationSchema, v.transform((ms) => Math.max(ms, 1)));

export const SERVICE_OPTIONS = {
  hosts: field({ flag: "host", kind: "list", input: list(hostSchema), default: [], help: "host name(s) to serve; *.example.com allowed", hint: "NAME", shownDefault: "none (catch-all)" }),
  pathPrefixes: field({
    flag: "path-prefix",
    kind: "list",
    input: v.pipe(list(pathPrefixSchema), v.minLength(1, "at least one path prefix")),
    default: ["/"],
    help: "serve only below these path(s)",
    hint: "PATH",
  }),
  stripPathPrefix: flag("strip-path-prefix", true, "strip the path prefix before forwarding"),
  tls: flag("tls", false, "serve over HTTPS with an automatic certificate (needs --host or --tls-on-demand-url)"),
  tlsStaging: flag("tls-staging", false, "use the ACME staging directory"),
  tlsCertificatePath: optionalText("tls-certificate-path", "PEM certificate to use instead of ACME", "FILE"),
  tlsPrivateKeyPath: optionalText("tls-private-key-path", "PEM private key for --tls-certificate-path", "FILE"),
  tlsOnDemandUrl: field({
    flag: "tls-on-demand-url",
    kind: "value",
    input: onDemandUrl,
    stored: v.optional(v.string()),
    help: "with --tls, order a certificate for a host at its first handshake once GET URL?host=NAME answers 200 (a /path asks the service's targets)",
    hint: "URL",
  }),
  tlsChallenge: field({
    flag: "tls-challenge",
    kind: "value",
    input: v.picklist(TLS_CHALLENGES, (issue) => `invalid TLS challenge ${issue.received} (expected ${TLS_CHALLENGES.join(", ")})`),
    stored: v.optional(v.picklist(TLS_CHALLENGES), "auto"),
    help: "ACME challenge: http-01 (HTTP port), tls-alpn-01 (HTTPS port), dns-01 (--tls-dns-hook), or auto: http-01, then tls-alpn-01",
    hint: "TYPE",
    shownDefault: "dns-01 with --tls-dns-hook, else auto",
  }),
  tlsDnsHook: optionalText("tls-dns-hook", "executable run as CMD add|remove FQDN VALUE to publish DNS-01 TXT records; wildcard hosts need it", "CMD"),
  tlsRedirect: flag("tls-redirect", true, "with TLS, redirect HTTP to HTTPS (301)"),
  canonicalHost: field({ flag: "canonical-host", kind: "value", input: hostSchema, stored: v.optional(hostSchema), help: "301-redirect the service's other hosts to this one", hint: "NAME" }),
  drainTimeout: duration("drain-timeout", "30s", "max time old targets get to finish in-flight requests"),
  healthCheckPath: field({ flag: "health-check-path", kind: "value", input: healthCheckPath, default: "/up", help: "health check path", hint: "PATH" }),
  healthCheckInterval: field({ flag: "health-check-interval", kind: "value", input: checkInterval, stored: whole, default: "1s", help: "time between health checks", hint: "DURATION" }),
  healthCheckTimeout: field({ flag: "health-check-timeout", kind: "value", input: checkTimeout, stored: whole, default: "5s", help: "timeout of one health check", hint: "DURATION" }),
  healthCheckPort: field({
    flag: "health-check-port",
    kind: "value",
    // 0 is kamal-proxy's way of saying "the target's port", and so it is here.
    input: v.pipe(portSchema, v.transform((port) => port || undefined)),
    stored: v.optional(whole),
    help: "health check port; 0 = the target's",
    hint: "PORT",
    shownDefault: "the target's",
  }),
  healthCheckHost: optionalText("health-check-host", "Host header for health checks", "NAME"),
  targetTimeout: duration("target-timeout", "30s", "max wait for a target's response headers, then 504"),
  forwardHeaders: field({
    flag: "forward-headers",
    kind: "boolean",
    input: booleanSchema,
    stored: v.boolean(),
    help: "trust and extend inbound X-Forwarded-*",
    shownDefault: "true without TLS, false with TLS",
  }),
  clientIpHeader: field({
    flag: "client-ip-header",
    kind: "value",
    input: headerName,
    stored: v.optional(v.string()),
    help: "header holding the client's IP (set by a proxy in front); stands in for the inbound X-Forwarded-For",
    hint: "NAME",
  }),
  basicAuthFile: field({
    flag: "basic-auth-file",
    kind: "value",
    // An empty name (an unset variable in a script) must not deploy an open service.
    input: v.pipe(v.string(), v.nonEmpty("empty file name")),
    stored: v.optional(v.string()),
    help: "htpasswd file (bcrypt or argon2); requests need its credentials (read at deploy)",
    hint: "FILE",
  }),
  bufferRequests: flag("buffer-requests", false, "read request bodies fully before forwarding"),
  bufferResponses: flag("buffer-responses", false, "read response bodies fully before relaying"),
  bufferMemory: size("buffer-memory", "1m", "in-memory part of a buffer; the rest spills to a temp file"),
  maxRequestBody: field({
    flag: "max-request-body",
    kind: "value",
    input: sizeSchema,
    stored: whole,
    default: "0",
    shownDefault: "0 (run's --max-request-body)",
    help: "largest request body (413 above); 0 = the run default, no limit unless that is set",
    hint: "SIZE",
  }),
  maxResponseBody: size("max-response-body", "0", "largest response body with --buffer-responses (502 above); 0 = no limit"),
  errorPages: optionalText("error-pages", "directory with custom <status>.html error pages", "DIR"),
  logRequestHeaders: field({ flag: "log-request-header", kind: "list", input: list(headerName), default: [], help: "request header(s) to add to the request log", hint: "NAME" }),
  logResponseHeaders: field({ flag: "log-response-header", kind: "list", input: list(headerName), default: [], help: "response header(s) to add to the request log", hint: "NAME" }),
  writerAffinityTimeout: duration("writer-affinity-timeout", "1s", "after a write, how long a client's reads go to the writers"),
  scopeCookiePaths: flag("scope-cookie-paths", false, "put the matched path prefix in front of every Set-Cookie Path (the app's and parachute's)"),
  readTargetWebsockets: flag("read-target-websockets", false, "WebSocket upgrades may go to read targets"),
  excludeMetricsPaths: field({
    flag: "exclude-metrics-path",
    kind: "list",
    input: list(pathPrefixSchema),
    default: [],
    help: "requests below these path(s) are not counted in the request metrics",
    hint: "PATH",
  }),
};

type Fields = Record<string, Field<v.GenericSchema, v.GenericSchema, unknown>>;

/** A request's entry for a field: optional, with its default where it has one. */
type RequestEntry<F> =
  F extends Field<infer I, v.GenericSchema, infer D> ? (F extends { required: true } ? I : undefined extends D ? v.OptionalSchema<I, undefined> : v.OptionalSchema<I, D>) : never;
/** The state's entry for a field: its stored schema, defaulted where the field has a default (state written before the field existed). */
type StoredEntry<F> = F extends Field<v.GenericSchema, infer S, infer D> ? (undefined extends D ? S : v.OptionalSchema<S, v.InferInput<S>>) : never;

export function requestEntries<T extends Fields>(fields: T): { [K in keyof T]: RequestEntry<T[K]> } {
  return Object.fromEntries(
    Object.entries(fields).map(([key, f]) => [key, f.required ? f.input : f.default === undefined ? v.optional(f.input) : v.optional(f.input, f.default)]),
  ) as { [K in keyof T]: RequestEntry<T[K]> };
}

function storedEntries<T extends Fields>(fields: T): { [K in keyof T]: StoredEntry<T[K]> } {
  return Object.fromEntries(
    Object.entries(fields).map(([key, f]) => [key, f.default === undefined ? f.stored : v.optional(f.stored, v.parse(f.input, f.default))]),
  ) as { [K in keyof T]: StoredEntry<T[K]> };
}

/** Service options as stored and used: durations in ms, sizes in bytes. */
export const ServiceOptionsSchema = v.object(storedEntries(SERVICE_OPTIONS));
export type ServiceOptions = v.InferOutput<typeof ServiceOptionsSchema>;

/** How the default of a field reads in help and in the README. */
export function shownDefault(f: Field): string | undefined {
  if (f.shownDefault !== undefined) return f.shownDefault;
  if (f.default === undefined) return undefined;
  if (Array.isArray(f.default)) return f.default.length ? f.default.join(",") : undefined;
  return String(f.default);
}

/** The service options as a request carries them, validated. */
export const ServiceOptionsRequest = v.object(requestEntries(SERVICE_OPTIONS));
export type ServiceOptionsRequest = v.InferOutput<typeof ServiceOptionsRequest>;

/**
 * A service's options from a request's: certificate files mean TLS (with that
 * certificate instead of ACME), X-Forwarded-* are trusted by default only
 * without TLS, a DNS hook means DNS-01 unless another challenge is named,
 * and repeated hosts or prefixes count once.
 */
export function resolveOptions(request: ServiceOptionsRequest): ServiceOptions {
  const picked = Object.fromEntries(Object.keys(SERVICE_OPTIONS).map((key) => [key, request[key as keyof ServiceOptionsRequest]]));
  const tls = request.tls || Boolean(request.tlsCertificatePath);
  return {
    ...(picked as ServiceOptions),
    tls,
    hosts: [...new Set(request.hosts)],
    pathPrefixes: [...new Set(request.pathPrefixes)],
    forwardHeaders: request.forwardHeaders ?? !tls,
    tlsChallenge: request.tlsChallenge ?? (request.tlsDnsHook ? "dns-01" : "auto"),
  };
}

/** The options of a service deployed with nothing but its targets, as `overrides` change them. */
export function defaultOptions(overrides: Partial<ServiceOptionsRequest> = {}): ServiceOptions {
  return resolveOptions({ ...v.parse(ServiceOptionsRequest, {}), ...overrides });
}
