import { expect, test } from "bun:test";
import * as v from "valibot";
import { DEPLOY_PARAMETERS } from "../admin/requests.ts";
import { describeIssues } from "../values.ts";
import { defaultOptions, requestEntries, resolveOptions, SERVICE_OPTIONS, ServiceOptionsRequest, ServiceOptionsSchema, shownDefault } from "./options.ts";

const request = (input: Record<string, unknown>) => v.parse(ServiceOptionsRequest, input);
const problem = (input: Record<string, unknown>) => {
  const result = v.safeParse(ServiceOptionsRequest, input);
  expect(result.success).toBe(false);
  return describeIssues(result.issues!);
};

test("defaultOptions: every option at its documented default, durations in ms and sizes in bytes", () => {
  const options = defaultOptions();
  expect(Object.keys(options).sort()).toEqual(Object.keys(SERVICE_OPTIONS).sort());
  expect(options).toEqual({
    hosts: [],
    pathPrefixes: ["/"],
    stripPathPrefix: true,
    tls: false,
    tlsStaging: false,
    tlsCertificatePath: undefined,
    tlsPrivateKeyPath: undefined,
    tlsChallenge: "auto",
    tlsDnsHook: undefined,
    tlsRedirect: true,
    canonicalHost: undefined,
    drainTimeout: 30_000,
    healthCheckPath: "/up",
    healthCheckInterval: 1000,
    healthCheckTimeout: 5000,
    healthCheckPort: undefined,
    healthCheckHost: undefined,
    targetTimeout: 30_000,
    forwardHeaders: true,
    bufferRequests: false,
    bufferResponses: false,
    bufferMemory: 1024 * 1024,
    maxRequestBody: 0,
    maxResponseBody: 0,
    errorPages: undefined,
    logRequestHeaders: [],
    logResponseHeaders: [],
    writerAffinityTimeout: 1000,
    scopeCookiePaths: false,
    readTargetWebsockets: false,
    excludeMetricsPaths: [],
  });
});

test("defaultOptions applies overrides as given", () => {
  const options = defaultOptions({ hosts: ["a.test"], healthCheckInterval: 200, tls: true });
  expect(options.hosts).toEqual(["a.test"]);
  expect(options.healthCheckInterval).toBe(200);
  expect(options.tls).toBe(true);
  expect(options.forwardHeaders).toBe(false);
});

test("forwardHeaders defaults to on without TLS and off with it; an explicit value wins", () => {
  expect(resolveOptions(request({})).forwardHeaders).toBe(true);
  expect(resolveOptions(request({ tls: true })).forwardHeaders).toBe(false);
  expect(resolveOptions(request({ tls: "true", forwardHeaders: "true" })).forwardHeaders).toBe(true);
  expect(resolveOptions(request({ forwardHeaders: false })).forwardHeaders).toBe(false);
});

test("a certificate path implies TLS, and with it no forwarded headers by default", () => {
  const options = resolveOptions(request({ tlsCertificatePath: "/etc/cert.pem", tlsPrivateKeyPath: "/etc/key.pem" }));
  expect(options.tls).toBe(true);
  expect(options.tlsCertificatePath).toBe("/etc/cert.pem");
  expect(options.tlsPrivateKeyPath).toBe("/etc/key.pem");
  expect(options.forwardHeaders).toBe(false);
  expect(resolveOptions(request({ tlsCertificatePath: "" })).tls).toBe(false);
});

test("hosts and path prefixes count once, after parsing to their canonical form", () => {
  const options = resolveOptions(request({ hosts: ["a.test", "A.TEST", "a.test.", "b.test"], pathPrefixes: ["/api", "/api/", "/x", "/api"] }));
  expect(options.hosts).toEqual(["a.test", "b.test"]);
  expect(options.pathPrefixes).toEqual(["/api", "/x"]);
});

test("request values are parsed: durations, sizes, booleans as text, header names lower-cased", () => {
  const options = resolveOptions(
    request({ drainTimeout: "1m30s", bufferMemory: "2m", maxRequestBody: "10k", stripPathPrefix: "false", logRequestHeaders: ["X-Request-ID"], healthCheckPort: "8081" }),
  );
  expect(options.drainTimeout).toBe(90_000);
  expect(options.bufferMemory).toBe(2 * 1024 * 1024);
  expect(options.maxRequestBody).toBe(10_240);
  expect(options.stripPathPrefix).toBe(false);
  expect(options.logRequestHeaders).toEqual(["x-request-id"]);
  expect(options.healthCheckPort).toBe(8081);
});

test("a health-check interval below 10ms is raised to 10ms; a timeout to at least 1ms", () => {
  expect(request({ healthCheckInterval: "1ms" }).healthCheckInterval).toBe(10);
  expect(request({ healthCheckInterval: "0" }).healthCheckInterval).toBe(10);
  expect(request({ healthCheckInterval: "10ms" }).healthCheckInterval).toBe(10);
  expect(request({ healthCheckInterval: "11ms" }).healthCheckInterval).toBe(11);
  expect(request({ healthCheckInterval: "2s" }).healthCheckInterval).toBe(2000);
  expect(request({ healthCheckTimeout: "0ms" }).healthCheckTimeout).toBe(1);
  expect(request({ healthCheckTimeout: "3ms" }).healthCheckTimeout).toBe(3);
});

test("bad option values are refused, naming the field and the value", () => {
  expect(problem({ healthCheckPath: "up" })).toBe('healthCheckPath: invalid health check path "up" (expected a path like /up)');
  expect(problem({ healthCheckPath: "/u p" })).toBe('healthCheckPath: invalid health check path "/u p" (expected a path like /up)');
  expect(problem({ logRequestHeaders: ["bad header"] })).toBe('logRequestHeaders: invalid header name "bad header"');
  expect(problem({ pathPrefixes: [] })).toBe("pathPrefixes: at least one path prefix");
  expect(problem({ hosts: "a.test" })).toBe("hosts: expected a list");
  expect(problem({ hosts: ["bad host"] })).toBe('hosts: invalid host "bad host" (expected a name like app.example.com or *.example.com)');
  expect(problem({ healthCheckPort: 70000 })).toBe('healthCheckPort: invalid port "70000"');
  expect(problem({ healthCheckInterval: "often" })).toBe('healthCheckInterval: invalid duration "often" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)');
  expect(problem({ bufferMemory: "lots" })).toBe('bufferMemory: invalid size "lots" (use bytes or a k/m/g suffix, e.g. 10m)');
  expect(problem({ tls: "sometimes" })).toBe('tls: invalid boolean "sometimes" (expected true or false)');
});

test("every option and deploy parameter has its own flag, in kebab case", () => {
  const flags = [...Object.values(SERVICE_OPTIONS), ...Object.values(DEPLOY_PARAMETERS)].map((f) => f.flag);
  expect(new Set(flags).size).toBe(flags.length);
  for (const flag of flags) expect(flag).toMatch(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/);
  expect(flags.length).toBe(Object.keys(SERVICE_OPTIONS).length + Object.keys(DEPLOY_PARAMETERS).length);
});

test("every option with a default accepts it, and its help line is filled in", () => {
  for (const [key, f] of Object.entries(SERVICE_OPTIONS)) {
    expect(f.help.length).toBeGreaterThan(0);
    if (f.default !== undefined) expect(v.safeParse(f.input, f.default).success).toBe(true);
    expect(["value", "boolean", "list"]).toContain(f.kind);
    expect(key).not.toContain("-");
  }
});

test("the stored form of the default options passes the state schema unchanged", () => {
  const options = defaultOptions({ hosts: ["a.test"], healthCheckPort: 9000 });
  expect(v.parse(ServiceOptionsSchema, JSON.parse(JSON.stringify(options)))).toEqual(options);
  // A stored option missing (older state) gets its default; forwardHeaders has none and must be there.
  const { drainTimeout: _, ...older } = options;
  expect(v.parse(ServiceOptionsSchema, older).drainTimeout).toBe(30_000);
  const { forwardHeaders: __, ...noForward } = options;
  expect(v.safeParse(ServiceOptionsSchema, noForward).success).toBe(false);
});

test("shownDefault: the literal default, or the wording given for it", () => {
  expect(shownDefault(SERVICE_OPTIONS.drainTimeout)).toBe("30s");
  expect(shownDefault(SERVICE_OPTIONS.tls)).toBe("false");
  expect(shownDefault(SERVICE_OPTIONS.pathPrefixes)).toBe("/");
  expect(shownDefault(SERVICE_OPTIONS.hosts)).toBe("none (catch-all)");
  expect(shownDefault(SERVICE_OPTIONS.forwardHeaders)).toBe("true without TLS, false with TLS");
  expect(shownDefault(SERVICE_OPTIONS.healthCheckPort)).toBe("the target's");
  expect(shownDefault(SERVICE_OPTIONS.logRequestHeaders)).toBeUndefined();
  expect(shownDefault(SERVICE_OPTIONS.errorPages)).toBeUndefined();
});

test("requestEntries: a required field must be given, a defaulted one is filled in", () => {
  const schema = v.object(requestEntries(DEPLOY_PARAMETERS));
  const missing = v.safeParse(schema, {});
  expect(missing.success).toBe(false);
  expect(describeIssues(missing.issues!)).toBe("targets is required");
  expect(v.parse(schema, { targets: ["web"] })).toEqual({ targets: ["web:80"], readTargets: [], deployTimeout: 30_000, force: false, verifyWindow: 0 });
  expect(describeIssues(v.safeParse(schema, { targets: [] }).issues!)).toBe("targets: at least one target is required");
});

test("--tls-challenge: auto, or dns-01 with a DNS hook, unless another challenge is named; a bad type is an error naming it", () => {
  expect(resolveOptions(request({})).tlsChallenge).toBe("auto");
  expect(resolveOptions(request({ tlsDnsHook: "/bin/hook" })).tlsChallenge).toBe("dns-01");
  expect(resolveOptions(request({ tlsChallenge: "tls-alpn-01" })).tlsChallenge).toBe("tls-alpn-01");
  expect(resolveOptions(request({ tlsChallenge: "tls-alpn-01", tlsDnsHook: "/bin/hook" })).tlsChallenge).toBe("tls-alpn-01");
  expect(problem({ tlsChallenge: "dns-02" })).toContain("invalid TLS challenge \"dns-02\"");
});
