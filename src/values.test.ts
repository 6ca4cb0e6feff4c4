import { expect, test } from "bun:test";
import * as v from "valibot";
import {
  booleanSchema,
  describeIssues,
  durationSchema,
  longDurationSchema,
  formatDuration,
  isMissingField,
  jsonFromEnv,
  parseBoolean,
  parseDuration,
  parseHost,
  parsePathPrefix,
  parsePort,
  parseSize,
  parseTarget,
  parseCount,
  parsePercent,
  parseWorkerCount,
  portSchema,
  sizeSchema,
  targetSchema,
  ValueError,
} from "./values.ts";

/** The message of the ValueError `fn` throws (fails the test if it throws nothing or something else). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValueError);
    return (error as Error).message;
  }
  throw new Error("expected a ValueError, nothing was thrown");
}

test("parseDuration: each unit, combinations, bare and decimal seconds", () => {
  expect(parseDuration("500ms")).toBe(500);
  expect(parseDuration("30s")).toBe(30_000);
  expect(parseDuration("2m")).toBe(120_000);
  expect(parseDuration("1h")).toBe(3_600_000);
  expect(parseDuration("1m30s")).toBe(90_000);
  expect(parseDuration("1h1m1s1ms")).toBe(3_661_001);
  expect(parseDuration("45")).toBe(45_000);
  expect(parseDuration(45)).toBe(45_000);
  expect(parseDuration("0")).toBe(0);
  expect(parseDuration("1.5")).toBe(1500);
  expect(parseDuration(0.25)).toBe(250);
  expect(parseDuration("1.5s")).toBe(1500);
  expect(parseDuration("0.5m")).toBe(30_000);
  expect(parseDuration("1.5ms")).toBe(2); // rounded to whole milliseconds
  expect(parseDuration("  30s ")).toBe(30_000);
});

test("parseDuration refuses anything else, naming the value as typed", () => {
  for (const bad of ["", "   ", "abc", "30x", "s", "-5s", "-5", "1.s", ".5s", "30 s", "1m30", "30s junk", "1e3", "30S"]) {
    expect(errorOf(() => parseDuration(bad))).toBe(`invalid duration "${bad}" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)`);
  }
  expect(errorOf(() => parseDuration(-1))).toBe('invalid duration "-1" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)');
  expect(errorOf(() => parseDuration(Number.NaN))).toBe('invalid duration "NaN" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)');
});

test("formatDuration writes durations the way a person does", () => {
  expect(formatDuration(0)).toBe("0ms");
  expect(formatDuration(500)).toBe("500ms");
  expect(formatDuration(1500)).toBe("1500ms");
  expect(formatDuration(1000)).toBe("1s");
  expect(formatDuration(30_000)).toBe("30s");
  expect(formatDuration(90_000)).toBe("1m30s");
  expect(formatDuration(120_000)).toBe("2m");
  expect(formatDuration(3_600_000)).toBe("1h");
  expect(formatDuration(3_661_000)).toBe("1h1m1s");
  expect(formatDuration(7_260_000)).toBe("2h1m");
});

test("formatDuration output parses back to the same milliseconds", () => {
  for (const ms of [0, 1, 10, 999, 1000, 1001, 5000, 59_000, 60_000, 61_000, 90_000, 3_599_000, 3_600_000, 3_601_000, 86_400_000, 90_061_000]) {
    expect(parseDuration(formatDuration(ms))).toBe(ms);
  }
});

test("parseSize: bytes and binary k/m/g multiples, any case, optional b", () => {
  expect(parseSize("0")).toBe(0);
  expect(parseSize("512")).toBe(512);
  expect(parseSize(512)).toBe(512);
  expect(parseSize("100b")).toBe(100);
  expect(parseSize("10k")).toBe(10_240);
  expect(parseSize("10K")).toBe(10_240);
  expect(parseSize("10kb")).toBe(10_240);
  expect(parseSize("1m")).toBe(1_048_576);
  expect(parseSize("1MB")).toBe(1_048_576);
  expect(parseSize("2g")).toBe(2 * 1024 ** 3);
  expect(parseSize("10 m")).toBe(10 * 1_048_576);
  expect(parseSize(" 3k ")).toBe(3072);
});

test("parseSize refuses decimals, negative numbers and unknown units", () => {
  for (const bad of ["", "m", "1.5m", "-1", "10t", "10kk", "ten", "1 0"]) {
    expect(errorOf(() => parseSize(bad))).toBe(`invalid size "${bad}" (use bytes or a k/m/g suffix, e.g. 10m)`);
  }
});

test("parseTarget: host:port in canonical form, port 80 by default", () => {
  expect(parseTarget("web-1:3000")).toBe("web-1:3000");
  expect(parseTarget("web")).toBe("web:80");
  expect(parseTarget("Web-1.Internal:3000")).toBe("web-1.internal:3000");
  expect(parseTarget("my_app:5000")).toBe("my_app:5000");
  expect(parseTarget("10.0.0.1:8080")).toBe("10.0.0.1:8080");
  expect(parseTarget("127.0.0.1")).toBe("127.0.0.1:80");
  expect(parseTarget("[::1]:3000")).toBe("[::1]:3000");
  expect(parseTarget("[::1]")).toBe("[::1]:80");
  expect(parseTarget("[2001:DB8::1]:443")).toBe("[2001:db8::1]:443");
  expect(parseTarget("[::ffff:10.0.0.1]:1")).toBe("[::ffff:10.0.0.1]:1");
  expect(parseTarget(" web:1 ")).toBe("web:1");
  expect(parseTarget("web:65535")).toBe("web:65535");
});

test("parseTarget refuses bad ports, hosts and URLs with the exact message", () => {
  const bad = [
    "web:0",
    "web:65536",
    "web:99999",
    "web:",
    "web:abc",
    "web:-1",
    "web:123456",
    ":3000",
    "",
    "-web:80",
    "we b:80",
    "web/x:80",
    "http://web:3000",
    "::1:3000",
    "[::1",
    "[::1]:0",
    "[::1]x",
    "[zz::1]:80",
    "[1.2.3.4]:80",
    "web:3000:1",
    "a..b:80",
  ];
  for (const input of bad) {
    expect(errorOf(() => parseTarget(input))).toBe(`invalid target "${input}" (expected HOST:PORT, e.g. web-1:3000 or [::1]:3000)`);
  }
});

test("parseHost: lower-cased names, one leading wildcard label, trailing dot dropped", () => {
  expect(parseHost("App.Example.com")).toBe("app.example.com");
  expect(parseHost("*.example.com")).toBe("*.example.com");
  expect(parseHost("*.Example.COM.")).toBe("*.example.com");
  expect(parseHost("example.com.")).toBe("example.com");
  expect(parseHost("localhost")).toBe("localhost");
  expect(parseHost("10.0.0.1")).toBe("10.0.0.1");
  expect(parseHost(" a.test ")).toBe("a.test");
  expect(parseHost(`${"a".repeat(63)}.test`)).toBe(`${"a".repeat(63)}.test`);
});

test("parseHost refuses what is not a host name", () => {
  const bad = ["", "*", "*.", "**.example.com", "*.*.example.com", "a.*.com", "exa mple.com", "-bad.com", "bad-.com", "a..b", ".a", "http://x", "example.com:80", `${"a".repeat(64)}.test`, "a/b"];
  for (const input of bad) {
    expect(errorOf(() => parseHost(input))).toBe(`invalid host "${input}" (expected a name like app.example.com or *.example.com)`);
  }
});

test("parsePathPrefix: trailing slashes removed, `/` kept", () => {
  expect(parsePathPrefix("/api")).toBe("/api");
  expect(parsePathPrefix("/api/")).toBe("/api");
  expect(parsePathPrefix("/api///")).toBe("/api");
  expect(parsePathPrefix("/a/b/")).toBe("/a/b");
  expect(parsePathPrefix("/")).toBe("/");
  expect(parsePathPrefix("//")).toBe("/");
  expect(parsePathPrefix(" /x ")).toBe("/x");
});

test("parsePathPrefix refuses relative paths, queries, fragments and spaces", () => {
  for (const bad of ["", "api", "api/", "/api?x=1", "/?", "/a#b", "/a b", "\t"]) {
    expect(errorOf(() => parsePathPrefix(bad))).toBe(`invalid path prefix "${bad}" (expected a path like /api)`);
  }
});

test("parsePort: 0-65535", () => {
  expect(parsePort("0")).toBe(0);
  expect(parsePort("8080")).toBe(8080);
  expect(parsePort(443)).toBe(443);
  expect(parsePort(" 65535 ")).toBe(65535);
  for (const bad of ["65536", "-1", "abc", "", "1.5", "123456", "80a"]) expect(errorOf(() => parsePort(bad))).toBe(`invalid port "${bad}"`);
  expect(errorOf(() => parsePort(70000))).toBe('invalid port "70000"');
});

test("parseWorkerCount: 1-256", () => {
  expect(parseWorkerCount("1")).toBe(1);
  expect(parseWorkerCount(4)).toBe(4);
  expect(parseWorkerCount("256")).toBe(256);
  for (const bad of ["0", "257", "1000", "x", "-1", "", "2.5"]) {
    expect(errorOf(() => parseWorkerCount(bad))).toBe(`invalid worker count "${bad}" (expected 1-256)`);
  }
});

test("parsePercent: 0-100, with or without %", () => {
  expect(parsePercent("5%")).toBe(5);
  expect(parsePercent("0.5%")).toBe(0.5);
  expect(parsePercent(" 12 ")).toBe(12);
  expect(parsePercent(0)).toBe(0);
  expect(parsePercent("100%")).toBe(100);
  for (const bad of ["150%", "-1%", "five", "", "5%%", "%"]) {
    expect(errorOf(() => parsePercent(bad))).toBe(`invalid percentage "${bad}" (expected 0-100, e.g. 5%)`);
  }
});

test("parseCount: whole numbers from 1", () => {
  expect(parseCount("1")).toBe(1);
  expect(parseCount(20)).toBe(20);
  for (const bad of ["0", "-3", "2.5", "x", ""]) {
    expect(errorOf(() => parseCount(bad))).toBe(`invalid count "${bad}" (expected a whole number of at least 1)`);
  }
});

test("parseBoolean: true/false and their usual spellings", () => {
  expect(parseBoolean(true)).toBe(true);
  expect(parseBoolean(false)).toBe(false);
  for (const yes of ["true", "1", "yes", "on", " TRUE ", "On"]) expect(parseBoolean(yes)).toBe(true);
  for (const no of ["false", "0", "no", "off", "Off", "FALSE"]) expect(parseBoolean(no)).toBe(false);
  for (const bad of ["", "maybe", "2", "y", "t"]) expect(errorOf(() => parseBoolean(bad))).toBe(`invalid boolean "${bad}" (expected true or false)`);
});

test("the schemas apply the parsers and carry their messages as issues", () => {
  expect(v.parse(durationSchema, "1m30s")).toBe(90_000);
  expect(v.parse(durationSchema, 2)).toBe(2000);
  expect(v.parse(sizeSchema, "1k")).toBe(1024);
  expect(v.parse(targetSchema, "WEB")).toBe("web:80");
  expect(v.parse(booleanSchema, "off")).toBe(false);
  expect(v.parse(portSchema, "9000")).toBe(9000);
  const bad = v.safeParse(durationSchema, "soon");
  expect(bad.success).toBe(false);
  expect(bad.issues?.[0].message).toBe('invalid duration "soon" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)');
  expect(v.safeParse(portSchema, 70000).issues?.[0].message).toBe('invalid port "70000"');
  expect(v.safeParse(targetSchema, 3000).issues?.[0].message).toBe("expected a target string");
  expect(v.safeParse(durationSchema, true).issues?.[0].message).toBe("expected a string or a number");
  expect(v.safeParse(booleanSchema, 1).issues?.[0].message).toBe("expected a boolean");
});

test("jsonFromEnv: unset or empty is undefined; bad JSON and invalid values name the variable", () => {
  const schema = v.object({ port: portSchema });
  expect(jsonFromEnv(schema, "X_STATE", {})).toBeUndefined();
  expect(jsonFromEnv(schema, "X_STATE", { X_STATE: "" })).toBeUndefined();
  expect(jsonFromEnv(schema, "X_STATE", { X_STATE: '{"port":"8080"}' })).toEqual({ port: 8080 });
  expect(errorOf(() => jsonFromEnv(schema, "X_STATE", { X_STATE: "{nope" }))).toBe("X_STATE is not valid JSON");
  expect(errorOf(() => jsonFromEnv(schema, "X_STATE", { X_STATE: '{"port":70000}' }))).toBe('X_STATE is invalid: invalid port "70000"');
});

const Request = v.object({ drainTimeout: durationSchema, targets: v.array(targetSchema), name: v.string("expected a string") });
const issuesOf = (input: unknown) => {
  const result = v.safeParse(Request, input);
  expect(result.success).toBe(false);
  return result.issues!;
};

test("describeIssues names the field, skipping list indexes, through nameOf", () => {
  const flag = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  const badDuration = issuesOf({ drainTimeout: "later", targets: [], name: "web" });
  expect(describeIssues(badDuration)).toBe('drainTimeout: invalid duration "later" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)');
  expect(describeIssues(badDuration, flag)).toBe('--drain-timeout: invalid duration "later" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)');
  const badTarget = issuesOf({ drainTimeout: "1s", targets: ["ok:1", "web:0"], name: "web" });
  expect(describeIssues(badTarget)).toBe('targets: invalid target "web:0" (expected HOST:PORT, e.g. web-1:3000 or [::1]:3000)');
  expect(describeIssues(issuesOf({ drainTimeout: "1s", targets: [], name: 5 }))).toBe("name: expected a string");
});

test("describeIssues: a missing field is required, null is not an object, no issue is invalid input", () => {
  const missing = issuesOf({ targets: [], name: "web" });
  expect(isMissingField(missing[0])).toBe(true);
  expect(describeIssues(missing)).toBe("drainTimeout is required");
  expect(describeIssues(missing, (k) => `<${k}>`)).toBe("<drainTimeout> is required");
  const wrong = issuesOf({ drainTimeout: "1s", targets: [], name: 5 });
  expect(isMissingField(wrong[0])).toBe(false);
  expect(describeIssues(issuesOf(null))).toBe("expected a JSON object");
  expect(isMissingField(issuesOf(null)[0])).toBe(false);
  expect(describeIssues(issuesOf("text"))).toBe(issuesOf("text")[0].message);
  expect(describeIssues(issuesOf("text"))).toContain("Object");
  expect(describeIssues([])).toBe("invalid input");
  expect(isMissingField(undefined)).toBe(false);
});

test("a duration something waits for is at most what a timer can hold; a renewal margin is not", () => {
  expect(v.parse(durationSchema, "596h")).toBe(596 * 3_600_000);
  expect(v.safeParse(durationSchema, "99999999999h").issues?.[0].message).toBe('invalid duration "99999999999h" (at most 596h)');
  expect(v.parse(longDurationSchema, "2000h")).toBe(2000 * 3_600_000);
});

test("a size too large to count exactly is refused", () => {
  expect(() => parseSize("99999999999999999999")).toThrow('invalid size "99999999999999999999" (too large)');
  expect(parseSize("1000000g")).toBe(1000000 * 1024 ** 3);
});
