// One parser per kind of value the user types: durations, sizes, target
// addresses, host names, path prefixes. Each throws a ValueError naming the bad
// value; the valibot schemas at the bottom wrap them so that CLI flags, admin
// API bodies and the state file all share exactly the same rules.
import * as v from "valibot";

export class ValueError extends Error {}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `500ms`, `30s`, `2m`, `1h`, `1m30s`, or a bare number of seconds → milliseconds. */
export function parseDuration(input: string | number): number {
  const text = String(input).trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = part.exec(text); m; m = part.exec(text)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    consumed = part.lastIndex;
  }
  if (text === "" || consumed !== text.length) {
    throw new ValueError(`invalid duration "${input}" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)`);
  }
  return Math.round(total);
}

/** Formats milliseconds back the way a person writes them (30s, 1m30s, 500ms). */
export function formatDuration(ms: number): string {
  if (ms % 1000 !== 0 || ms === 0) return `${ms}ms`;
  let s = ms / 1000;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s ? `${s}s` : ""}`;
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** Bytes, or a number with a k/m/g suffix (binary multiples). */
export function parseSize(input: string | number): number {
  const m = /^(\d+)\s*([kmg]?)b?$/i.exec(String(input).trim());
  if (!m) throw new ValueError(`invalid size "${input}" (use bytes or a k/m/g suffix, e.g. 10m)`);
  const bytes = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  // Beyond 2^53 a count of bytes is no longer exact (and no body is that large).
  if (!Number.isSafeInteger(bytes)) throw new ValueError(`invalid size "${input}" (too large)`);
  return bytes;
}

// RFC 1123 labels; underscores are tolerated because container names use them.
const HOST_LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i;

function isHostName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) => HOST_LABEL.test(label));
}

function isIPv4(addr: string): boolean {
  const parts = addr.split(".");
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

function isIPv6(addr: string): boolean {
  // URL does the heavy lifting: it accepts exactly the valid IPv6 literals.
  if (!/^[0-9a-f:.]+$/i.test(addr) || !addr.includes(":")) return false;
  try {
    new URL(`http://[${addr}]/`);
    return true;
  } catch {
    return false;
  }
}

/** A target is `host:port` or `host` (port 80); host is a name, IPv4, or [IPv6]. Returns the canonical form. */
export function parseTarget(input: string): string {
  const text = input.trim();
  const bad = () => new ValueError(`invalid target "${input}" (expected HOST:PORT, e.g. web-1:3000 or [::1]:3000)`);
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
    if (!isIPv6(host)) throw bad();
    host = `[${host.toLowerCase()}]`;
  } else {
    const colon = text.lastIndexOf(":");
    host = colon === -1 ? text : text.slice(0, colon);
    portText = colon === -1 ? undefined : text.slice(colon + 1);
    if (host.startsWith("-") || !(isIPv4(host) || isHostName(host))) throw bad();
    host = host.toLowerCase();
  }
  let port = 80;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) throw bad();
    port = Number(portText);
    if (port < 1 || port > 65535) throw bad();
  }
  return `${host}:${port}`;
}

/** A host to serve: a name, optionally with one leading `*.` wildcard label. Lower-cased. */
export function parseHost(input: string): string {
  const name = input.trim().toLowerCase().replace(/\.$/, "");
  const rest = name.startsWith("*.") ? name.slice(2) : name;
  if (!isHostName(rest) && !isIPv4(rest)) {
    throw new ValueError(`invalid host "${input}" (expected a name like app.example.com or *.example.com)`);
  }
  return name;
}

/** A path prefix: starts with `/`, no query, no trailing slash (except `/` itself). */
export function parsePathPrefix(input: string): string {
  const text = input.trim();
  if (!text.startsWith("/") || /[?#\s]/.test(text)) {
    throw new ValueError(`invalid path prefix "${input}" (expected a path like /api)`);
  }
  const trimmed = text.replace(/\/+$/, "");
  return trimmed === "" ? "/" : trimmed;
}

export function parsePort(input: string | number): number {
  const text = String(input).trim();
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new ValueError(`invalid port "${input}"`);
  return Number(text);
}

/** How many worker processes: 1 to 256 (one per core is the default). */
export function parseWorkerCount(input: string | number): number {
  const text = String(input).trim();
  if (!/^\d{1,3}$/.test(text) || Number(text) < 1 || Number(text) > 256) throw new ValueError(`invalid worker count "${input}" (expected 1-256)`);
  return Number(text);
}

/** A percentage, `5%`, `0.5%` or a bare `5`, from 0 to 100 → the number (5). */
export function parsePercent(input: string | number): number {
  const text = String(input).trim();
  const m = /^(\d+(?:\.\d+)?)\s*%?$/.exec(text);
  if (!m || Number(m[1]) > 100) throw new ValueError(`invalid percentage "${input}" (expected 0-100, e.g. 5%)`);
  return Number(m[1]);
}

/** A count of at least 1 (a number of requests). */
export function parseCount(input: string | number): number {
  const text = String(input).trim();
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1) throw new ValueError(`invalid count "${input}" (expected a whole number of at least 1)`);
  return Number(text);
}

export function parseBoolean(input: string | boolean): boolean {
  if (typeof input === "boolean") return input;
  const text = input.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(text)) return true;
  if (["false", "0", "no", "off"].includes(text)) return false;
  throw new ValueError(`invalid boolean "${input}" (expected true or false)`);
}

/** Wraps a throwing parser into a valibot schema whose issue message is the parser's. */
export function parsed<I, O>(base: v.GenericSchema<unknown, I>, parse: (input: I) => O) {
  return v.pipe(
    base,
    v.rawTransform<I, O>(({ dataset, addIssue, NEVER }) => {
      try {
        return parse(dataset.value);
      } catch (error) {
        addIssue({ message: error instanceof Error ? error.message : String(error) });
        return NEVER;
      }
    }),
  );
}

/** Milliseconds and byte counts as the state file keeps them: whole, not negative. */
export const wholeSchema = v.pipe(v.number(), v.integer(), v.minValue(0));
/** A list of values, each checked by `item`. */
export const listSchema = <S extends v.GenericSchema>(item: S) => v.array(item, "expected a list");

const stringOrNumber = v.union([v.string(), v.number()], "expected a string or a number");
/**
 * The longest wait a timer can hold (setTimeout takes a signed 32-bit count
 * of milliseconds and fires at once for more): 596h 31m.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;
function timerDuration(input: string | number): number {
  const ms = parseDuration(input);
  if (ms > MAX_TIMER_MS) throw new ValueError(`invalid duration "${input}" (at most 596h)`);
  return ms;
}
/** A duration something waits for (a timeout, a window, an interval): at most MAX_TIMER_MS. */
export const durationSchema = parsed(stringOrNumber, timerDuration);
/** A duration nothing waits for (how long before expiry a certificate is renewed). */
export const longDurationSchema = parsed(stringOrNumber, parseDuration);
/** A duration that must be more than 0; `why` ends the error message. */
export const positiveDurationSchema = (why: string) =>
  parsed(stringOrNumber, (input) => {
    const ms = timerDuration(input);
    if (ms === 0) throw new ValueError(`invalid duration "${input}" (${why})`);
    return ms;
  });
export const sizeSchema = parsed(stringOrNumber, parseSize);
export const targetSchema = parsed(v.string("expected a target string"), parseTarget);
export const hostSchema = parsed(v.string("expected a host string"), parseHost);
export const pathPrefixSchema = parsed(v.string("expected a path string"), parsePathPrefix);
export const portSchema = parsed(stringOrNumber, parsePort);
export const workerCountSchema = parsed(stringOrNumber, parseWorkerCount);
export const percentSchema = parsed(stringOrNumber, parsePercent);
export const countSchema = parsed(stringOrNumber, parseCount);
export const booleanSchema = parsed(v.union([v.string(), v.boolean()], "expected a boolean"), parseBoolean);

/**
 * A JSON value one parachute process hands another in an environment
 * variable (an upgrade's handover, a worker's sockets); undefined when unset.
 * Throws a ValueError naming the variable.
 */
export function jsonFromEnv<T>(schema: v.GenericSchema<unknown, T>, name: string, env: Record<string, string | undefined>): T | undefined {
  const text = env[name];
  if (!text) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ValueError(`${name} is not valid JSON`);
  }
  const result = v.safeParse(schema, json);
  if (!result.success) throw new ValueError(`${name} is invalid: ${result.issues[0].message}`);
  return result.output;
}

/** Describes the first valibot issue as `field: message`, so errors name what was wrong. */
/** Whether the issue is a required field that is absent (valibot reports it as an invalid key). */
export function isMissingField(issue: v.BaseIssue<unknown> | undefined): boolean {
  return issue?.kind === "schema" && (issue.type === "object" || issue.type === "strict_object") && issue.input === undefined && (issue.path?.length ?? 0) > 0;
}

export function describeIssues(issues: readonly v.BaseIssue<unknown>[], nameOf: (key: string) => string = (k) => k): string {
  const issue = issues[0];
  if (!issue) return "invalid input";
  const key = issue.path?.map((p) => String(p.key)).find((k) => !/^\d+$/.test(k));
  if (key && isMissingField(issue)) return `${nameOf(key)} is required`;
  if (!key && issue.input === null) return "expected a JSON object";
  return key ? `${nameOf(key)}: ${issue.message}` : issue.message;
}
