#!/usr/bin/env bun
// parachute: a reverse proxy for zero-downtime deploys. `run` is the server;
// every other command is a short-lived client of its admin socket.
import { defineCommand, runMain } from "citty";
import { deployCommand } from "./cli/deploy.ts";
import { listCommand } from "./cli/list.ts";
import { removeCommand } from "./cli/remove.ts";
import { runCommand } from "./cli/run.ts";
import { VERSION } from "./version.ts";

const main = defineCommand({
  meta: { name: "parachute", version: VERSION, description: "A reverse proxy for zero-downtime deployments" },
  subCommands: {
    run: runCommand,
    deploy: deployCommand,
    remove: removeCommand,
    list: listCommand,
    version: defineCommand({
      meta: { name: "version", description: "Print the version" },
      run: () => console.log(VERSION),
    }),
  },
});

void runMain(main);
