import { ConfigError, RUN_OPTIONS, resolveRunOptions, type RunField, type RunFlags } from "../config.ts";
import { runServer, StartupError } from "../server/server.ts";
import { CliError } from "./client.ts";
import { parachuteCommand } from "./command.ts";
import type { FlagTable } from "./flags.ts";

/** The run flags, from the run options' declarations (src/config.ts). */
const runFlags: FlagTable = Object.fromEntries(
  Object.values(RUN_OPTIONS).map((f: RunField) => [
    f.flag,
    {
      type: f.kind === "value" ? "string" : f.kind,
      description: `${f.help} [env ${f.env.at(-1)}]`,
      // A switch that is off unless given needs no default in help.
      default: f.kind === "boolean" && f.shownDefault === "false" ? undefined : f.shownDefault.replaceAll("`", ""),
      valueHint: f.hint,
    },
  ]),
);

export const runCommand = parachuteCommand({
  name: "run",
  description: "Run the proxy server",
  shape: { positionals: [], flags: runFlags },
  async run(ctx) {
    try {
      await runServer(resolveRunOptions(ctx.flags as RunFlags));
    } catch (error) {
      if (error instanceof ConfigError || error instanceof StartupError) throw new CliError(error.message);
      throw error;
    }
  },
});
