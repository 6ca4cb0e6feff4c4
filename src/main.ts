#!/usr/bin/env bun
// parachute: a reverse proxy for zero-downtime deploys. `run` is the server;
// every other command is a short-lived client of its admin socket.
import "./cli/plain-output.ts";
import { defineCommand, runMain, type CommandDef } from "citty";
import { usageText } from "./cli/command.ts";
import { deployCommand } from "./cli/deploy.ts";
import { listCommand } from "./cli/list.ts";
import { pauseCommand, resumeCommand, stopCommand } from "./cli/maintenance.ts";
import { removeCommand } from "./cli/remove.ts";
import { rolloutCommand } from "./cli/rollout.ts";
import { runCommand } from "./cli/run.ts";
import { addCommand, rmCommand } from "./cli/targets.ts";
import { upgradeCommand } from "./cli/upgrade.ts";
import { VERSION } from "./version.ts";

const subCommands: Record<string, CommandDef> = {
  run: runCommand,
  deploy: deployCommand,
  add: addCommand,
  rm: rmCommand,
  remove: removeCommand,
  list: listCommand,
  pause: pauseCommand,
  stop: stopCommand,
  resume: resumeCommand,
  rollout: rolloutCommand,
  upgrade: upgradeCommand,
  version: defineCommand({
    meta: { name: "version", description: "Print the version" },
    run: () => console.log(VERSION),
  }),
};

const main = defineCommand({
  meta: { name: "parachute", version: VERSION, description: "A reverse proxy for zero-downtime deployments" },
  subCommands,
});

/** Follows a command path (`rollout set`) through the tree; `unknown` names the first name that is not a command. */
function findCommand(path: string[]): { command: CommandDef; unknown?: string } {
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
    console.log(await usageText(found.command, parentFor(found.command)));
  },
});

/**
 * Usage headings read `parachute rollout set`: subcommands carry their group
 * in their own name, so the one parent to show is the program itself.
 */
function parentFor(command: CommandDef): CommandDef | null {
  return command === main ? null : main;
}

// citty reports an unknown command without our `Error:` prefix; check first ...
const args = process.argv.slice(2);
const path = args.slice(0, args.findIndex((a) => a.startsWith("-")) === -1 ? args.length : args.findIndex((a) => a.startsWith("-")));
const walked = findCommand(path.slice(0, 2));
if (walked.unknown && (walked.command === main || walked.command.subCommands)) {
  console.error(`Error: unknown command ${walked.unknown}\n`);
  console.error(await usageText(walked.command, parentFor(walked.command)));
  process.exit(1);
}
// ... and a missing one (`parachute`, `parachute rollout`) as citty's bare "No command specified.".
const wantsMeta = args.some((a) => ["--help", "-h", "--version", "-v"].includes(a));
if (!walked.unknown && walked.command.subCommands && !walked.command.run && !wantsMeta) {
  console.error(`Error: missing command\n`);
  console.error(await usageText(walked.command, parentFor(walked.command)));
  process.exit(1);
}

// --help is answered here too, for the same heading (`deploy web --help` included).
if (args.some((a) => a === "--help" || a === "-h")) {
  console.log(await usageText(walked.command, parentFor(walked.command)));
  process.exit(0);
}

void runMain(main);
