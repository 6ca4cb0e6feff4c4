// The command tree: every command by name, with help for each.
import { defineCommand, type CommandDef } from "citty";
import { helpText } from "./command.ts";
import { deployCommand } from "./deploy.ts";
import { historyCommand } from "./history.ts";
import { listCommand } from "./list.ts";
import { pauseCommand, resumeCommand, stopCommand } from "./maintenance.ts";
import { removeCommand } from "./remove.ts";
import { rollbackCommand } from "./rollback.ts";
import { rolloutCommand } from "./rollout.ts";
import { runCommand } from "./run.ts";
import { addCommand, rmCommand } from "./targets.ts";
import { upgradeCommand } from "./upgrade.ts";
import { VERSION } from "../version.ts";

const subCommands: Record<string, CommandDef> = {
  run: runCommand,
  deploy: deployCommand,
  add: addCommand,
  rm: rmCommand,
  remove: removeCommand,
  list: listCommand,
  ls: listCommand,
  pause: pauseCommand,
  stop: stopCommand,
  resume: resumeCommand,
  rollout: rolloutCommand,
  history: historyCommand,
  rollback: rollbackCommand,
  upgrade: upgradeCommand,
  version: defineCommand({
    meta: { name: "version", description: "Print the version" },
    run: () => console.log(VERSION),
  }),
};

export const main = defineCommand({
  meta: { name: "parachute", version: VERSION, description: "A reverse proxy for zero-downtime deployments" },
  subCommands,
});

/** Follows a command path (`rollout set`) through the tree; `unknown` names the first name that is not a command. */
export function findCommand(path: string[]): { command: CommandDef; unknown?: string } {
  let command: CommandDef = main;
  for (const name of path) {
    const next = (command.subCommands as Record<string, CommandDef> | undefined)?.[name];
    if (!next) return { command, unknown: name };
    command = next;
  }
  return { command };
}

subCommands.help = defineCommand({
  meta: { name: "help", description: "Show help for parachute or one of its commands (parachute help rollout set)" },
  async run({ rawArgs }) {
    const found = findCommand(rawArgs.filter((a) => !a.startsWith("-")));
    if (found.unknown) {
      console.error(`Error: unknown command ${found.unknown}`);
      process.exit(1);
    }
    console.log(helpText(found.command));
  },
});

