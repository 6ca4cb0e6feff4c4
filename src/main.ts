#!/usr/bin/env bun
// parachute: a reverse proxy for zero-downtime deploys. `run` is the server;
// every other command is a short-lived client of its admin socket.
import { defineCommand, runMain } from "citty";
import { deployCommand } from "./cli/deploy.ts";
import { listCommand } from "./cli/list.ts";
import { pauseCommand, resumeCommand, stopCommand } from "./cli/maintenance.ts";
import { rolloutCommand } from "./cli/rollout.ts";
import { addCommand, rmCommand } from "./cli/targets.ts";
import { removeCommand } from "./cli/remove.ts";
import { runCommand } from "./cli/run.ts";
import { VERSION } from "./version.ts";

const main = defineCommand({
  meta: { name: "parachute", version: VERSION, description: "A reverse proxy for zero-downtime deployments" },
  subCommands: {
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
    version: defineCommand({
      meta: { name: "version", description: "Print the version" },
      run: () => console.log(VERSION),
    }),
  },
});

void runMain(main);
