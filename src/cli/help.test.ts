import { expect, test } from "bun:test";
import type { CommandDef } from "citty";
import { helpText } from "./command.ts";
import { commandHelp, wrap } from "./help.ts";
import { deployTableMarkdown } from "./deploy.ts";
import { main } from "./tree.ts";

function everyCommand(command: CommandDef, path: string[] = []): [string, CommandDef][] {
  const subs = Object.entries((command.subCommands ?? {}) as Record<string, CommandDef>);
  return [[path.join(" ") || "parachute", command], ...subs.flatMap(([name, sub]) => everyCommand(sub, [...path, name]))];
}

test("every command's help fits 80 columns, with no trailing spaces and one spelling of defaults", () => {
  const commands = everyCommand(main);
  expect(commands.map(([name]) => name)).toContain("rollout set");
  for (const [name, command] of commands) {
    const help = helpText(command);
    for (const line of help.split("\n")) {
      if (line.length > 80 || /\s$/.test(line)) throw new Error(`help of ${name}: ${JSON.stringify(line)}`);
    }
    expect(help).not.toContain("Default");
  }
});

test("the deploy help names every flag with its default", () => {
  const deploy = helpText((main.subCommands as Record<string, CommandDef>).deploy!);
  expect(deploy).toContain("USAGE parachute deploy [OPTIONS] SERVICE");
  expect(deploy).toMatch(/--target HOST:PORT +target HOST:PORT; several are load-balanced\n +\(required; repeatable, comma-separated\)/);
  expect(deploy).toMatch(/--deploy-timeout DURATION +max wait for new targets to become healthy\n +\(default: 30s\)/);
  expect(deploy).toContain("--[no-]strip-path-prefix");
  expect(deploy).toMatch(/--health-check-interval DURATION\n +time between health checks \(default: 1s\)/);
});

test("a term too long for the first column puts its description on the next line", () => {
  const help = commandHelp("parachute x", "About x", {
    positionals: [],
    flags: { short: { type: "string", description: "s", valueHint: "N" }, "a-very-long-flag-name-indeed": { type: "string", description: "long", valueHint: "DURATION" } },
  });
  expect(help.split("\n").slice(-3)).toEqual(["  --short N                   s", "  --a-very-long-flag-name-indeed DURATION", "                              long"]);
});

test("wrap breaks at spaces and keeps a word longer than the width whole", () => {
  expect(wrap("one two three four", 9)).toEqual(["one two", "three", "four"]);
  expect(wrap("a averyveryverylongword b", 5)).toEqual(["a", "averyveryverylongword", "b"]);
  expect(wrap("", 10)).toEqual([]);
});

test("the rollback help names the deploy's timing and health-check flags, defaulting to the service's own", () => {
  const rollback = helpText((main.subCommands as Record<string, CommandDef>).rollback!);
  expect(rollback).toContain("USAGE parachute rollback [OPTIONS] SERVICE");
  expect(rollback).toMatch(/--deploy-timeout DURATION +max wait for the previous deploy's targets to\n +become healthy \(default: 30s\)/);
  for (const flag of ["drain-timeout", "health-check-path", "health-check-interval", "health-check-timeout", "health-check-port", "health-check-host"]) {
    expect(rollback).toContain(`--${flag} `);
  }
  expect(rollback.match(/default: the\s+service's/g)).toHaveLength(6);
  expect(rollback).not.toContain("--target");
});
