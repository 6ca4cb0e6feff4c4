// Strict flag parsing for every command (README "Commands"). citty draws the help, but
// its own parser silently accepts unknown flags and keeps only the last of a
// repeated flag, so the values come from node:util parseArgs in strict mode,
// driven by the same flag table that feeds citty's help.
import { parseArgs } from "node:util";
import { shownDefault, type Field } from "../service/options.ts";

export interface FlagSpec {
  type: "string" | "boolean" | "list";
  description: string;
  /** Name of the request field it fills; defaults to the camelCase flag name. */
  field?: string;
  /** Shown in help only: the real defaults live in the request schemas. */
  default?: string;
  valueHint?: string;
  /** Shown in help: the command refuses to run without it. */
  required?: boolean;
  /** The client's own setting (`--socket`, `--json`): never a field of the request it sends. */
  local?: boolean;
}

export type FlagTable = Record<string, FlagSpec>;

/** The flags of request fields declared with `field()`: each fills the field of its key. */
export function flagTable(fields: Record<string, Field>): FlagTable {
  const table: FlagTable = {};
  for (const [key, f] of Object.entries(fields)) {
    table[f.flag] = { type: f.kind === "value" ? "string" : f.kind, field: key, description: f.help, default: shownDefault(f), valueHint: f.hint, required: f.required };
  }
  return table;
}

export interface CommandShape {
  positionals: { name: string; description: string }[];
  flags: FlagTable;
  /**
   * Flags this command does not take but kamal-proxy's command of the same
   * name does, each with the line that says where parachute has it
   * (docs/kamal-proxy.md).
   */
  movedFlags?: Record<string, string>;
}

export class UsageError extends Error {
  /** A line after the error, before the usage: what the user may have meant. */
  hint?: string;
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function fieldOf(flag: string, spec: FlagSpec): string {
  return spec.field ?? camel(flag);
}

/** The flag name behind a request field, for error messages (`targets` → `--target`). */
export function flagForField(table: FlagTable, field: string): string {
  for (const [flag, spec] of Object.entries(table)) if (fieldOf(flag, spec) === field) return `--${flag}`;
  return field;
}

export interface ParsedFlags {
  positionals: string[];
  /** Request fields: strings, booleans, or string lists; only flags given on the command line. */
  values: Record<string, string | boolean | string[]>;
  /** Raw flag values by flag name, for flags that are not request fields. */
  flags: Record<string, string | boolean | string[]>;
}

export function parseFlags(rawArgs: string[], shape: CommandShape): ParsedFlags {
  const table = shape.flags;
  // `--flag=true` / `--flag=false` for booleans: parseArgs only knows `--flag` and `--no-flag`.
  const args = rawArgs.map((arg) => {
    const m = /^--([a-z0-9-]+)=(.*)$/i.exec(arg);
    if (!m || table[m[1]!]?.type !== "boolean") return arg;
    const value = m[2]!.toLowerCase();
    if (value === "true") return `--${m[1]}`;
    if (value === "false") return `--no-${m[1]}`;
    throw new UsageError(`invalid value for --${m[1]}: "${m[2]}" (expected true or false)`);
  });
  // `--target -x`: name the bad value rather than parseArgs' "ambiguous argument".
  for (let i = 0; i < args.length - 1; i++) {
    const m = /^--([a-z0-9-]+)$/i.exec(args[i]!);
    const next = args[i + 1]!;
    if (m && table[m[1]!] && table[m[1]!]!.type !== "boolean" && next.startsWith("-")) {
      const known = /^--(?:no-)?([a-z0-9-]+)/i.exec(next);
      if (known && table[known[1]!]) throw new UsageError(`flag --${m[1]} needs a value`);
      throw new UsageError(`invalid value for --${m[1]}: "${next}"`);
    }
  }
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {};
  for (const [flag, spec] of Object.entries(table)) {
    options[flag] = spec.type === "boolean" ? { type: "boolean" } : { type: "string", multiple: true };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true, allowNegative: true });
  } catch (error) {
    const usage = new UsageError(cleanParseError((error as Error).message));
    const unknown = /^unknown flag --([a-z0-9-]+)$/i.exec(usage.message);
    if (unknown) usage.hint = shape.movedFlags?.[unknown[1]!];
    throw usage;
  }
  const positionals = parsed.positionals;
  if (positionals.length > shape.positionals.length) {
    throw new UsageError(`unexpected argument "${positionals[shape.positionals.length]}"`);
  }
  if (positionals.length < shape.positionals.length) {
    throw new UsageError(`missing argument ${shape.positionals[positionals.length]!.name}`);
  }
  const values: ParsedFlags["values"] = {};
  const flags: ParsedFlags["flags"] = {};
  for (const [flag, raw] of Object.entries(parsed.values)) {
    const spec = table[flag]!;
    let value: string | boolean | string[];
    if (spec.type === "boolean") value = raw as boolean;
    else {
      const all = raw as string[];
      if (spec.type === "list") value = all.flatMap((item) => item.split(",")).map((s) => s.trim()).filter(Boolean);
      // A repeated single-value flag: the last one wins, as in most CLIs
      // (wrappers can append overrides to a base command line).
      else value = all[all.length - 1]!;
    }
    flags[flag] = value!;
    if (!spec.local) values[fieldOf(flag, spec)] = value!;
  }
  return { positionals, values, flags };
}

function cleanParseError(message: string): string {
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag ${unknown[1]}`;
  const missing = /Option '(--[a-z0-9-]+)[^']*' argument missing/.exec(message);
  if (missing) return `flag ${missing[1]} needs a value`;
  const noArg = /Option '(--[a-z0-9-]+)' does not take an argument/.exec(message);
  if (noArg) return `flag ${noArg[1]} does not take a value`;
  const ambiguous = /Option '(--[a-z0-9-]+)' argument is ambiguous/.exec(message);
  if (ambiguous) return `flag ${ambiguous[1]} needs a value (use ${ambiguous[1]}=VALUE for values starting with "-")`;
  return message.split("\n")[0]!;
}
