import { expect, test } from "bun:test";
import * as os from "node:os";
import * as path from "node:path";
import { availableCores, ConfigError, proxyProtocolPolicy, resolveAcmeOptions, resolveRunOptions, resolveSocketPath } from "./config.ts";

const files = (contents: Record<string, string>) => (file: string) => contents[file];

test("the default worker count is the CPUs this process may use", () => {
  expect(availableCores(8, files({}))).toBe(8);
  expect(availableCores(8, files({ "/sys/fs/cgroup/cpu.max": "max 100000\n" }))).toBe(8);
  expect(availableCores(8, files({ "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n" }))).toBe(8);
});

test("a cgroup CPU quota (a container's --cpus) lowers it, rounded up, never below 1", () => {
  expect(availableCores(64, files({ "/sys/fs/cgroup/cpu.max": "200000 100000\n" }))).toBe(2);
  expect(availableCores(64, files({ "/sys/fs/cgroup/cpu.max": "150000 100000\n" }))).toBe(2);
  expect(availableCores(64, files({ "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n" }))).toBe(1);
  // A quota above the CPUs it may run on does not raise it.
  expect(availableCores(2, files({ "/sys/fs/cgroup/cpu.max": "800000 100000\n" }))).toBe(2);
});

// Run options: flag > PARACHUTE_<NAME> > <NAME> > default.

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
}

test("run options default as the README's table says", () => {
  const options = resolveRunOptions({}, {});
  expect(options.httpPort).toBe(80);
  expect(options.httpsPort).toBe(443);
  expect(options.bind).toBeUndefined();
  expect(options.metricsPort).toBe(0);
  expect(options.stateDir).toBe(path.join(os.homedir(), ".config", "parachute"));
  expect(options.debug).toBe(false);
  expect(options.socket).toBe(path.join(os.tmpdir(), "parachute.sock"));
  expect(options.workers).toBe(availableCores());
});

test("an explicit flag beats PARACHUTE_<NAME>, which beats <NAME>", () => {
  const env = { PARACHUTE_HTTP_PORT: "8080", HTTP_PORT: "9090", HTTPS_PORT: "0", PARACHUTE_DEBUG: "true", DEBUG: "false", WORKERS: "3" };
  const fromEnv = resolveRunOptions({}, env);
  expect(fromEnv.httpPort).toBe(8080);
  expect(fromEnv.httpsPort).toBe(0);
  expect(fromEnv.debug).toBe(true);
  expect(fromEnv.workers).toBe(3);
  const fromFlags = resolveRunOptions({ "http-port": "7070", debug: false, workers: "1" }, env);
  expect(fromFlags.httpPort).toBe(7070);
  expect(fromFlags.debug).toBe(false);
  expect(fromFlags.workers).toBe(1);
});

test("a bad value stops with an error naming where it came from, never a fallback", () => {
  expect(configError(() => resolveRunOptions({}, { HTTP_PORT: "abc" }))).toBe('invalid value for HTTP_PORT: invalid port "abc"');
  expect(configError(() => resolveRunOptions({}, { PARACHUTE_HTTPS_PORT: "70000" }))).toBe('invalid value for PARACHUTE_HTTPS_PORT: invalid port "70000"');
  expect(configError(() => resolveRunOptions({ "metrics-port": "-1" }, {}))).toBe('invalid value for --metrics-port: invalid port "-1"');
  expect(configError(() => resolveRunOptions({}, { WORKERS: "0" }))).toBe('invalid value for WORKERS: invalid worker count "0" (expected 1-256)');
  expect(configError(() => resolveRunOptions({}, { DEBUG: "maybe" }))).toBe('invalid value for DEBUG: invalid boolean "maybe" (expected true or false)');
  expect(configError(() => resolveRunOptions({}, { HTTP_PORT: "" }))).toBe('invalid value for HTTP_PORT: invalid port ""');
  expect(configError(() => resolveRunOptions({ "state-dir": "" }, {}))).toBe("invalid value for --state-dir: empty directory");
  // A valid flag wins before a bad variable is ever read.
  expect(resolveRunOptions({ "http-port": "81" }, { HTTP_PORT: "abc" }).httpPort).toBe(81);
});

test("--bind takes an IPv4 or IPv6 address (brackets dropped) or localhost", () => {
  expect(resolveRunOptions({ bind: "127.0.0.1" }, {}).bind).toBe("127.0.0.1");
  expect(resolveRunOptions({ bind: "[::1]" }, {}).bind).toBe("::1");
  expect(resolveRunOptions({}, { BIND: "::" }).bind).toBe("::");
  expect(resolveRunOptions({ bind: "localhost" }, {}).bind).toBe("localhost");
  expect(configError(() => resolveRunOptions({ bind: "example.com" }, {}))).toBe('invalid value for --bind: invalid address "example.com" (expected an IPv4 or IPv6 address)');
  expect(configError(() => resolveRunOptions({}, { BIND: "300.1.1.1" }))).toBe('invalid value for BIND: invalid address "300.1.1.1" (expected an IPv4 or IPv6 address)');
});

test("--proxy-protocol-from takes CIDRs, repeated or comma-separated; it turns the PROXY protocol on", () => {
  const flags = resolveRunOptions({ "proxy-protocol-from": ["10.0.0.0/8", "2001:db8::/32"] }, {});
  expect(flags.proxyProtocolFrom).toEqual(["10.0.0.0/8", "2001:db8::/32"]);
  expect(proxyProtocolPolicy(flags)).toEqual({ from: ["10.0.0.0/8", "2001:db8::/32"] });
  expect(resolveRunOptions({}, { PROXY_PROTOCOL_FROM: "10.0.0.0/8, 192.168.1.5" }).proxyProtocolFrom).toEqual(["10.0.0.0/8", "192.168.1.5"]);
  expect(proxyProtocolPolicy(resolveRunOptions({ "proxy-protocol": true }, {}))).toEqual({ from: [] });
  expect(proxyProtocolPolicy(resolveRunOptions({}, { PARACHUTE_PROXY_PROTOCOL: "true" }))).toEqual({ from: [] });
  expect(proxyProtocolPolicy(resolveRunOptions({}, {}))).toBeUndefined();
  expect(configError(() => resolveRunOptions({ "proxy-protocol-from": ["10.0.0.0/8", "10.0.0.0/40"] }, {}))).toBe(
    'invalid value for --proxy-protocol-from: invalid CIDR "10.0.0.0/40" (prefix must be 0-32)',
  );
  expect(configError(() => resolveRunOptions({}, { PROXY_PROTOCOL_FROM: "lb.internal" }))).toBe(
    'invalid value for PROXY_PROTOCOL_FROM: invalid CIDR "lb.internal" (expected an IPv4 or IPv6 address, optionally /prefix)',
  );
  // Given but empty is an error, not the PROXY protocol left off.
  expect(configError(() => resolveRunOptions({ "proxy-protocol-from": [""] }, {}))).toBe("invalid value for --proxy-protocol-from: empty list");
  expect(configError(() => resolveRunOptions({}, { PROXY_PROTOCOL_FROM: " , " }))).toBe("invalid value for PROXY_PROTOCOL_FROM: empty list");
});

test("the state directory is made absolute", () => {
  expect(resolveRunOptions({ "state-dir": "rel/state" }, {}).stateDir).toBe(path.resolve("rel/state"));
  expect(resolveRunOptions({}, { STATE_DIR: "/srv/parachute" }).stateDir).toBe("/srv/parachute");
});

test("the ACME cache: none by default (<state-dir>/certs), else the flag, PARACHUTE_TLS_ACME_CACHE_PATH or TLS_ACME_CACHE_PATH, made absolute", () => {
  expect(resolveRunOptions({}, {}).tlsAcmeCachePath).toBeUndefined();
  expect(resolveRunOptions({}, { TLS_ACME_CACHE_PATH: "/mnt/certs" }).tlsAcmeCachePath).toBe("/mnt/certs");
  expect(resolveRunOptions({}, { PARACHUTE_TLS_ACME_CACHE_PATH: "/a", TLS_ACME_CACHE_PATH: "/b" }).tlsAcmeCachePath).toBe("/a");
  expect(resolveRunOptions({ "tls-acme-cache-path": "shared/certs" }, { TLS_ACME_CACHE_PATH: "/b" }).tlsAcmeCachePath).toBe(path.resolve("shared/certs"));
  expect(configError(() => resolveRunOptions({ "tls-acme-cache-path": "" }, {}))).toBe("invalid value for --tls-acme-cache-path: empty directory");
  expect(configError(() => resolveRunOptions({}, { TLS_ACME_CACHE_PATH: "" }))).toBe("invalid value for TLS_ACME_CACHE_PATH: empty directory");
});

test("the admin socket: --socket, then PARACHUTE_SOCKET, then $XDG_RUNTIME_DIR, then the temp dir", () => {
  const env = { PARACHUTE_SOCKET: "/run/p.sock", XDG_RUNTIME_DIR: "/run/user/1000" };
  expect(resolveSocketPath("my.sock", env)).toBe(path.resolve("my.sock"));
  expect(resolveSocketPath(undefined, env)).toBe("/run/p.sock");
  expect(resolveSocketPath(undefined, { XDG_RUNTIME_DIR: "/run/user/1000" })).toBe("/run/user/1000/parachute.sock");
  expect(resolveSocketPath(undefined, {})).toBe(path.join(os.tmpdir(), "parachute.sock"));
  expect(resolveSocketPath("", { PARACHUTE_SOCKET: "rel.sock" })).toBe(path.resolve("rel.sock"));
  expect(resolveRunOptions({ socket: "/tmp/x.sock" }, env).socket).toBe("/tmp/x.sock");
});

test("ACME settings come from the environment, with floors on the check and retry intervals", () => {
  expect(resolveAcmeOptions({})).toEqual({
    directoryUrl: undefined,
    stagingDirectoryUrl: undefined,
    caFile: undefined,
    email: undefined,
    renewBeforeMs: 30 * 86_400_000,
    checkIntervalMs: 12 * 3_600_000,
    retryBackoffMs: 30_000,
    concurrency: 4,
    onDemandRate: 10,
    dnsResolvers: undefined,
    dnsWaitMs: 120_000,
  });
  const acme = resolveAcmeOptions({
    PARACHUTE_ACME_DIRECTORY: "https://ca.test/dir",
    PARACHUTE_ACME_STAGING_DIRECTORY: "https://ca.test/staging",
    PARACHUTE_ACME_CA: "/etc/ca.pem",
    PARACHUTE_ACME_EMAIL: "ops@example.com",
    PARACHUTE_ACME_RENEW_BEFORE: "1h",
    PARACHUTE_ACME_CHECK_INTERVAL: "1ms",
    PARACHUTE_ACME_RETRY: "0",
    PARACHUTE_ACME_CONCURRENCY: "2",
    PARACHUTE_TLS_ON_DEMAND_RATE: "50",
    PARACHUTE_ACME_DNS_RESOLVER: "127.0.0.1:5353, 9.9.9.9,[::1]:53",
    PARACHUTE_ACME_DNS_WAIT: "30s",
  });
  expect(acme).toEqual({
    directoryUrl: "https://ca.test/dir",
    stagingDirectoryUrl: "https://ca.test/staging",
    caFile: "/etc/ca.pem",
    email: "ops@example.com",
    renewBeforeMs: 3_600_000,
    checkIntervalMs: 100,
    retryBackoffMs: 100,
    concurrency: 2,
    onDemandRate: 50,
    dnsResolvers: ["127.0.0.1:5353", "9.9.9.9", "[::1]:53"],
    dnsWaitMs: 30_000,
  });
  expect(configError(() => resolveAcmeOptions({ PARACHUTE_ACME_CONCURRENCY: "0" }))).toBe(
    'invalid value for PARACHUTE_ACME_CONCURRENCY: invalid count "0" (expected a whole number of at least 1)',
  );
  expect(resolveAcmeOptions({ PARACHUTE_ACME_DIRECTORY: "" }).directoryUrl).toBeUndefined();
  expect(configError(() => resolveAcmeOptions({ PARACHUTE_ACME_DIRECTORY: "not a url" }))).toBe('invalid value for PARACHUTE_ACME_DIRECTORY: invalid URL "not a url"');
  expect(configError(() => resolveAcmeOptions({ PARACHUTE_ACME_DNS_RESOLVER: "ns1.example.com" }))).toBe(
    'invalid value for PARACHUTE_ACME_DNS_RESOLVER: invalid resolver list "ns1.example.com" (expected ip or ip:port, comma-separated)',
  );
  expect(configError(() => resolveAcmeOptions({ PARACHUTE_ACME_RETRY: "soon" }))).toBe(
    'invalid value for PARACHUTE_ACME_RETRY: invalid duration "soon" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)',
  );
});

test("two of parachute's own listeners on one port is an error naming both", () => {
  expect(configError(() => resolveRunOptions({ "metrics-port": "4192", "status-port": "4192" }, {}))).toBe("--status-port 4192 is also the --metrics-port");
  expect(configError(() => resolveRunOptions({ "https-port": "4481", "status-port": "4481" }, {}))).toBe("--status-port 4481 is also the --https-port");
  // 0 is "off" (or "any free port"), never a clash.
  expect(resolveRunOptions({ "http-port": "0", "https-port": "0", "metrics-port": "0" }, {}).metricsPort).toBe(0);
});
