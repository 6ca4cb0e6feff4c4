// Glue between citty (command tree, help) and our strict flags, request
// schemas and error output (README "Commands": exit 1 and one `Error: …` line).
import { defineCommand, type CommandDef } from "citty";
import * as v from "valibot";
import { describeIssues, isMissingField, ValueError } from "../values.ts";
import { resolveSocketPath } from "../config.ts";
import { AdminClient, CliError } from "./client.ts";
import { flagForField, parseFlags, UsageError, type CommandShape, type FlagTable, type ParsedFlags } from "./flags.ts";
import { commandHelp, groupHelp } from "./help.ts";

export const socketFlag: FlagTable = {
  socket: { type: "string", local: true, description: "admin socket of the server (default: $PARACHUTE_SOCKET, $XDG_RUNTIME_DIR/parachute.sock or the temp dir)", valueHint: "PATH" },
};

export interface CommandContext extends ParsedFlags {
  /** The admin client for `--socket` (or the default socket). */
  client: () => AdminClient;
  /** Validates request fields (positional service + flags) with a request schema, naming flags in errors. */
  request: <S extends v.GenericSchema>(schema: S, extra?: Record<string, unknown>) => v.InferOutput<S>;
}

const shapes = new WeakMap<CommandDef, CommandShape>();

interface Meta {
  name: string;
  description: string;
}

/** The help of a command or a command group, drawn from its flag table (README "Commands"). */
export function helpText(command: CommandDef): string {
  const meta = command.meta as Meta;
  const name = meta.name === "parachute" ? "parachute" : `parachute ${meta.name}`;
  if (command.subCommands) {
    // An alias (`ls` for `list`) is the same command: one entry, both names.
    const names = new Map<CommandDef, string[]>();
    for (const [sub, c] of Object.entries(command.subCommands as Record<string, CommandDef>)) names.set(c, [...(names.get(c) ?? []), sub]);
    const commands = [...names].map(([c, aliases]): [string, string] => [aliases.join(", "), (c.meta as Meta).description]);
    return groupHelp(name, meta.description, commands);
  }
  return commandHelp(name, meta.description, shapes.get(command) ?? { positionals: [], flags: {} });
}

function fail(message: string): never {
  console.error(`Error: ${message}`);
  process.exit(1);
}

export function parachuteCommand(def: {
  name: string;
  description: string;
  shape: CommandShape;
  run: (ctx: CommandContext) => Promise<void>;
}): CommandDef {
  const command: CommandDef = defineCommand({
    meta: { name: def.name, description: def.description },
    async run({ rawArgs }) {
      try {
        const parsed = parseFlags(rawArgs, def.shape);
        const table = def.shape.flags;
        await def.run({
          ...parsed,
          client: () => new AdminClient(resolveSocketPath(parsed.flags.socket as string | undefined)),
          request: (schema, extra = {}) => {
            const result = v.safeParse(schema, { ...extra, ...parsed.values });
            if (!result.success) {
              const message = describeIssues(result.issues, (field) => flagForField(table, field));
              // A required flag left out is a usage error: it comes with the usage.
              throw isMissingField(result.issues[0]) ? new UsageError(message) : new CliError(message);
            }
            return result.output;
          },
        });
      } catch (error) {
        if (error instanceof UsageError) {
          console.error(`Error: ${error.message}${error.hint ? `\n${error.hint}` : ""}\n`);
          console.error(helpText(command));
          process.exit(1);
        }
        if (error instanceof CliError || error instanceof ValueError) fail(error.message);
        fail((error as Error)?.message ?? String(error));
      }
    },
  });
  shapes.set(command, def.shape);
  return command;
}

/**
 * A command of the shape `parachute NAME SERVICE [flags]` that validates its
 * request, sends it to one admin endpoint, shows progress and says what it did.
 */
export function serviceCommand<S extends v.GenericSchema>(def: {
  name: string;
  description: string;
  flags: FlagTable;
  schema: S;
  path: string;
  done: (request: v.InferOutput<S>) => string;
  /** Shown under a usage error of a command naming its service (`rm web` without `--target`). */
  usageHint?: (service: string) => string;
}): CommandDef {
  return parachuteCommand({
    name: def.name,
    description: def.description,
    shape: { positionals: [{ name: "SERVICE", description: "service name" }], flags: { ...def.flags, ...socketFlag } },
    async run(ctx) {
      let request: v.InferOutput<S>;
      try {
        request = ctx.request(def.schema, { service: ctx.positionals[0] });
      } catch (error) {
        if (error instanceof UsageError && def.usageHint) error.hint = def.usageHint(ctx.positionals[0]!);
        throw error;
      }
      await ctx.client().command(def.path, { ...ctx.values, service: ctx.positionals[0] });
      console.log(def.done(request));
    },
  });
}
