import { expect, test } from "bun:test";
import { SERVICE_OPTIONS } from "../service/options.ts";
import { deployShape } from "./deploy.ts";
import { fieldOf, flagForField, flagTable, parseFlags, UsageError, type CommandShape } from "./flags.ts";

const SHAPE: CommandShape = {
  positionals: [{ name: "SERVICE", description: "service name" }],
  flags: {
    target: { type: "list", description: "targets", field: "targets" },
    "drain-timeout": { type: "string", description: "drain timeout" },
    tls: { type: "boolean", description: "tls" },
    "strip-path-prefix": { type: "boolean", description: "strip" },
  },
};

const parse = (...args: string[]) => parseFlags(args, SHAPE);

function thrownUsage(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return error as UsageError;
  }
  throw new Error("expected a UsageError, nothing was thrown");
}

const usageError = (fn: () => unknown) => thrownUsage(fn).message;

test("positionals and only the flags given; values by field name, flags by flag name", () => {
  expect(parse("web")).toEqual({ positionals: ["web"], values: {}, flags: {} });
  expect(parse("web", "--drain-timeout", "5s", "--tls")).toEqual({
    positionals: ["web"],
    values: { drainTimeout: "5s", tls: true },
    flags: { "drain-timeout": "5s", tls: true },
  });
});

test("a list flag may be repeated and comma-separated; blanks are dropped, items trimmed", () => {
  const { values, flags } = parse("web", "--target", "a:1", "--target", "b:1,c:1", "--target=d:1, e:1", "--target", "f:1,,");
  expect(values.targets).toEqual(["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]);
  expect(flags.target).toEqual(values.targets!);
  expect(parse("web", "--target=", "--target", ",").values.targets).toEqual([]);
});

test("a repeated single-value flag: the last one wins", () => {
  expect(parse("web", "--drain-timeout", "1s", "--drain-timeout=2s", "--drain-timeout", "3s").values.drainTimeout).toBe("3s");
});

test("booleans: --flag, --no-flag, --flag=true/false in any case; the last one wins", () => {
  expect(parse("web", "--tls").values.tls).toBe(true);
  expect(parse("web", "--no-tls").values.tls).toBe(false);
  expect(parse("web", "--tls=false").values.tls).toBe(false);
  expect(parse("web", "--tls=TRUE").values.tls).toBe(true);
  expect(parse("web", "--strip-path-prefix=False").values.stripPathPrefix).toBe(false);
  expect(parse("web", "--tls", "--no-tls").values.tls).toBe(false);
  expect(parse("web", "--no-tls", "--tls=true").values.tls).toBe(true);
});

test("a boolean given another value is refused, naming it", () => {
  expect(usageError(() => parse("web", "--tls=maybe"))).toBe('invalid value for --tls: "maybe" (expected true or false)');
  expect(usageError(() => parse("web", "--tls=1"))).toBe('invalid value for --tls: "1" (expected true or false)');
  expect(usageError(() => parse("web", "--tls="))).toBe('invalid value for --tls: "" (expected true or false)');
});

test("unknown flags are refused by name, negated value flags too", () => {
  expect(usageError(() => parse("web", "--nope"))).toBe("unknown flag --nope");
  expect(usageError(() => parse("web", "--nope=1"))).toBe("unknown flag --nope");
  expect(usageError(() => parse("web", "-x"))).toBe("unknown flag -x");
  expect(usageError(() => parse("web", "--no-target"))).toBe("unknown flag --no-target");
  expect(usageError(() => parse("web", "--TLS"))).toBe("unknown flag --TLS");
});

test("a value flag without its value", () => {
  expect(usageError(() => parse("web", "--drain-timeout"))).toBe("flag --drain-timeout needs a value");
  expect(usageError(() => parse("web", "--target", "--tls"))).toBe("flag --target needs a value");
  expect(usageError(() => parse("web", "--target", "--no-tls"))).toBe("flag --target needs a value");
  expect(usageError(() => parse("web", "--drain-timeout", "--target", "a:1"))).toBe("flag --drain-timeout needs a value");
});

test("a value starting with - is named as the bad value; with = it is taken as given", () => {
  expect(usageError(() => parse("web", "--target", "-x"))).toBe('invalid value for --target: "-x"');
  expect(usageError(() => parse("web", "--drain-timeout", "-5s"))).toBe('invalid value for --drain-timeout: "-5s"');
  expect(usageError(() => parse("web", "--target", "--unknown"))).toBe('invalid value for --target: "--unknown"');
  expect(parse("web", "--drain-timeout=-5s").values.drainTimeout).toBe("-5s");
});

test("positionals: too many or too few are refused by name", () => {
  expect(usageError(() => parse("web", "extra"))).toBe('unexpected argument "extra"');
  expect(usageError(() => parse("web", "--tls", "x"))).toBe('unexpected argument "x"');
  expect(usageError(() => parse("web", "--", "--tls"))).toBe('unexpected argument "--tls"');
  expect(usageError(() => parse())).toBe("missing argument SERVICE");
  expect(usageError(() => parse("--tls"))).toBe("missing argument SERVICE");
  expect(parseFlags([], { positionals: [], flags: {} })).toEqual({ positionals: [], values: {}, flags: {} });
  expect(parseFlags(["--", "-weird-name"], SHAPE).positionals).toEqual(["-weird-name"]);
});

test("flagTable turns option fields into flags filling those fields", () => {
  const table = flagTable(SERVICE_OPTIONS);
  expect(table["path-prefix"]).toEqual({
    type: "list",
    field: "pathPrefixes",
    description: "serve only below these path(s)",
    default: "/",
    valueHint: "PATH",
    required: false,
  });
  expect(table.tls!.type).toBe("boolean");
  expect(table["drain-timeout"]!.type).toBe("string");
  expect(table["drain-timeout"]!.default).toBe("30s");
  const { values } = parseFlags(["--host", "a.test,b.test", "--path-prefix", "/api", "--no-strip-path-prefix", "--drain-timeout", "5s"], { positionals: [], flags: table });
  expect(values).toEqual({ hosts: ["a.test", "b.test"], pathPrefixes: ["/api"], stripPathPrefix: false, drainTimeout: "5s" });
});

test("fieldOf and flagForField map between flags and fields", () => {
  expect(fieldOf("drain-timeout", { type: "string", description: "" })).toBe("drainTimeout");
  expect(fieldOf("health-check-path", { type: "string", description: "" })).toBe("healthCheckPath");
  expect(fieldOf("target", { type: "list", description: "", field: "targets" })).toBe("targets");
  expect(flagForField(SHAPE.flags, "targets")).toBe("--target");
  expect(flagForField(SHAPE.flags, "stripPathPrefix")).toBe("--strip-path-prefix");
  expect(flagForField(SHAPE.flags, "unknownField")).toBe("unknownField");
});

test("an unknown flag that kamal-proxy's command takes says where parachute has it", () => {
  const shape: CommandShape = { ...SHAPE, movedFlags: { "cache-path": "use: parachute run --cache-path DIR" } };
  for (const args of [["web", "--cache-path", "/x"], ["web", "--cache-path=/x"]]) {
    const error = thrownUsage(() => parseFlags(args, shape));
    expect(error.message).toBe("unknown flag --cache-path");
    expect(error.hint).toBe("use: parachute run --cache-path DIR");
  }
  expect(thrownUsage(() => parseFlags(["web", "--other"], shape)).hint).toBeUndefined();
});

test("deploy --tls-acme-cache-path (a kamal-proxy deploy flag) points to run", () => {
  const error = thrownUsage(() => parseFlags(["web", "--target", "a:1", "--tls-acme-cache-path", "/certs"], deployShape));
  expect(error.message).toBe("unknown flag --tls-acme-cache-path");
  expect(error.hint).toContain("parachute run --tls-acme-cache-path DIR");
});
