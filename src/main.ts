#!/usr/bin/env bun
// parachute: a reverse proxy for zero-downtime deploys. `run` is the server;
// every other command is a short-lived client of its admin socket.
import "./cli/plain-output.ts";
import { runMain } from "citty";
import { helpText } from "./cli/command.ts";
import { findCommand, main } from "./cli/tree.ts";

// citty reports an unknown command without our `Error:` prefix; check first ...
const args = process.argv.slice(2);
const path = args.slice(0, args.findIndex((a) => a.startsWith("-")) === -1 ? args.length : args.findIndex((a) => a.startsWith("-")));
const walked = findCommand(path.slice(0, 2));
if (walked.unknown && (walked.command === main || walked.command.subCommands)) {
  console.error(`Error: unknown command ${walked.unknown}\n`);
  console.error(helpText(walked.command));
  process.exit(1);
}
// ... and a missing one (`parachute`, `parachute rollout`) as citty's bare "No command specified.".
const wantsMeta = args.some((a) => ["--help", "-h", "--version", "-v"].includes(a));
if (!walked.unknown && walked.command.subCommands && !walked.command.run && !wantsMeta) {
  console.error(`Error: missing command\n`);
  console.error(helpText(walked.command));
  process.exit(1);
}

// --help is answered here too, for the same heading (`deploy web --help` included).
if (args.some((a) => a === "--help" || a === "-h")) {
  console.log(helpText(walked.command));
  process.exit(0);
}

void runMain(main);
