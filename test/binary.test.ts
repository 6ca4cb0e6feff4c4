// The command-line surface every user meets first: version, help, and strict
// flag parsing. Runs against the compiled binary when PARACHUTE_BIN is set.
import { expect, test } from "bun:test";
import pkg from "../package.json" with { type: "json" };
import { runCli } from "./support/proxy.ts";

test("--version and `version` print the package version", async () => {
  const flag = await runCli(["--version"]);
  expect(flag.code).toBe(0);
  expect(flag.stdout.trim()).toBe(pkg.version);
  const command = await runCli(["version"]);
  expect(command.code).toBe(0);
  expect(command.stdout.trim()).toBe(pkg.version);
});

test("help lists every command, and each command has its own help", async () => {
  const root = await runCli(["--help"]);
  expect(root.code).toBe(0);
  for (const command of ["run", "deploy", "add", "rm", "remove", "list", "pause", "stop", "resume", "rollout", "version"]) {
    expect(root.stdout).toContain(command);
  }
  const deploy = await runCli(["deploy", "--help"]);
  expect(deploy.code).toBe(0);
  expect(deploy.stdout).toContain("--target");
  expect(deploy.stdout).toContain("--drain-timeout");
  const rollout = await runCli(["rollout", "set", "--help"]);
  expect(rollout.code).toBe(0);
  expect(rollout.stdout).toContain("--percent");
});

test("an unknown flag is a usage error, not ignored", async () => {
  const result = await runCli(["deploy", "web", "--target", "127.0.0.1:3000", "--no-such-flag"], { PARACHUTE_SOCKET: "/nonexistent/parachute.sock" });
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("Error: unknown flag --no-such-flag");
  expect(result.stderr).toContain("USAGE");
  // It failed before trying to reach a server.
  expect(result.stderr).not.toContain("cannot reach parachute");
});

test("`parachute help [COMMAND]` shows help; an unknown command is an error", async () => {
  const help = await runCli(["help"]);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain("deploy");
  const sub = await runCli(["help", "rollout", "set"]);
  expect(sub.code).toBe(0);
  expect(sub.stdout).toContain("--percent");
  const unknown = await runCli(["bogus"]);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toContain("Error: unknown command bogus");
  const unknownSub = await runCli(["rollout", "bogus"]);
  expect(unknownSub.code).toBe(1);
  expect(unknownSub.stderr).toContain("Error: unknown command bogus");
});
