// The command line (README "Configuration" and "Commands"): run
// options from flags and the environment, value validation, usage errors,
// boolean and list flags, and the client's error messages.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { startBackend, type Backend } from "./support/backend.ts";
import { Proxy, freePort, runCli, tempDir, type CliResult, SLOW_TEST, HOOK_TIMEOUT } from "./support/proxy.ts";

/** A socket path where no server listens. */
const nowhere = path.join(tempDir(), "nobody-here.sock");

function expectUnreachable(result: CliResult, socket = nowhere) {
  expect(result.code).toBe(1);
  expect(result.stderr).toBe(`Error: cannot reach parachute at ${socket}: is "parachute run" running?\n`);
}

/** `run` with safe defaults, minus what a test decides itself; killed if it unexpectedly starts. */
function runServerCli(args: string[], env: Record<string, string | undefined> = {}, options: { bind?: boolean } = {}) {
  const dir = tempDir();
  const bind = options.bind === false ? [] : ["--bind", "127.0.0.1"];
  return runCli(["run", "--https-port", "0", ...bind, "--state-dir", dir, "--socket", path.join(dir, "admin.sock"), ...args], env, {
    timeoutMs: 10_000,
  });
}

describe("run options from the environment", () => {
  const started: Proxy[] = [];
  afterAll(async () => {
    await Promise.all(started.map((p) => p.stop()));
  }, HOOK_TIMEOUT);

  async function httpPortWith(env: Record<string, string>, args: string[] = []): Promise<number> {
    const proxy = await Proxy.start({ env, args, omitDefaults: ["http-port"] });
    started.push(proxy);
    const line = await proxy.waitForLog((l) => l.msg === "Server started");
    return Number(line.http_port);
  }

  test("HTTP_PORT sets the port", async () => {
    const port = await freePort();
    expect(await httpPortWith({ HTTP_PORT: String(port) })).toBe(port);
  }, SLOW_TEST);

  test("PARACHUTE_HTTP_PORT beats HTTP_PORT", async () => {
    const [plain, prefixed] = [await freePort(), await freePort()];
    expect(await httpPortWith({ HTTP_PORT: String(plain), PARACHUTE_HTTP_PORT: String(prefixed) })).toBe(prefixed);
  }, SLOW_TEST);

  test("a flag beats both", async () => {
    const [plain, prefixed, flag] = [await freePort(), await freePort(), await freePort()];
    const port = await httpPortWith({ HTTP_PORT: String(plain), PARACHUTE_HTTP_PORT: String(prefixed) }, ["--http-port", String(flag)]);
    expect(port).toBe(flag);
  }, SLOW_TEST);

  test("PARACHUTE_SOCKET is where the server listens and where clients look", async () => {
    const socket = path.join(tempDir(), "env.sock");
    // The server gets the socket path only from the environment...
    const server = await Proxy.start({ socket, env: { PARACHUTE_SOCKET: socket }, omitDefaults: ["socket"] });
    started.push(server);
    const line = await server.waitForLog((l) => l.msg === "Server started");
    expect(line.socket).toBe(socket);
    expect(fs.statSync(socket).isSocket()).toBe(true);
    // ...and so does a client.
    const listed = await runCli(["list"], { PARACHUTE_SOCKET: socket });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain("No services");
  }, SLOW_TEST);
});

describe("invalid run options are an error naming their source", () => {
  for (const [label, env, args, named] of [
    ["HTTP_PORT=abc", { HTTP_PORT: "abc" }, [], "HTTP_PORT"],
    ["PARACHUTE_HTTP_PORT=99999", { PARACHUTE_HTTP_PORT: "99999" }, [], "PARACHUTE_HTTP_PORT"],
    ["--http-port abc", {}, ["--http-port", "abc"], "--http-port"],
    ["METRICS_PORT=-1", { METRICS_PORT: "-1" }, ["--http-port", "0"], "METRICS_PORT"],
    ["BIND=not-an-address", { BIND: "not-an-address" }, ["--http-port", "0"], "BIND"],
    ["BIND=999.1.1.1", { BIND: "999.1.1.1" }, ["--http-port", "0"], "BIND"],
    ["DEBUG=maybe", { DEBUG: "maybe" }, ["--http-port", "0"], "DEBUG"],
    ["--max-request-body lots", {}, ["--http-port", "0", "--max-request-body", "lots"], "--max-request-body"],
    ["MAX_REQUEST_BODY=-1k", { MAX_REQUEST_BODY: "-1k" }, ["--http-port", "0"], "MAX_REQUEST_BODY"],
  ] as const) {
    test(label, async () => {
      // BIND must come from the environment for its own case, so no --bind there.
      const result = await runServerCli([...args], env, { bind: named !== "BIND" });
      expect(result.timedOut).toBeUndefined();
      expect(result.code).toBe(1);
      expect(result.stderr).toStartWith("Error: ");
      expect(result.stderr).toContain(named);
      expect(result.stdout).not.toContain("Server started");
    }, SLOW_TEST);
  }
});

describe("clients without a server", () => {
  test("list, deploy and remove say the server cannot be reached", async () => {
    expectUnreachable(await runCli(["list", "--socket", nowhere]));
    expectUnreachable(await runCli(["deploy", "web", "--target", "127.0.0.1:3000", "--socket", nowhere]));
    expectUnreachable(await runCli(["remove", "web", "--socket", nowhere]));
  }, SLOW_TEST);

  test("the socket comes from PARACHUTE_SOCKET, else $XDG_RUNTIME_DIR/parachute.sock; a leftover non-socket file is unreachable too", async () => {
    expectUnreachable(await runCli(["list"], { PARACHUTE_SOCKET: nowhere }));
    const runtime = tempDir();
    expectUnreachable(await runCli(["list"], { PARACHUTE_SOCKET: undefined, XDG_RUNTIME_DIR: runtime }), path.join(runtime, "parachute.sock"));
    const stale = path.join(tempDir(), "stale.sock");
    fs.writeFileSync(stale, "");
    expectUnreachable(await runCli(["list", "--socket", stale]), stale);
  }, SLOW_TEST);

  for (const [label, args, value] of [
    ["a URL as target", ["--target", "http://x"], "http://x"],
    ["a port out of range", ["--target", "x:99999"], "x:99999"],
    ["a target that looks like a flag (--target -x)", ["--target", "-x"], "-x"],
    ["a target that looks like a flag (--target=-x)", ["--target=-x"], "-x"],
    ["one bad target in a list", ["--target", "127.0.0.1:3000,web:0"], "web:0"],
    ["a bad duration", ["--target", "127.0.0.1:3000", "--deploy-timeout", "5x"], "5x"],
    ["a bad drain timeout", ["--target", "127.0.0.1:3000", "--drain-timeout", "1m30"], "1m30"],
    ["a bad size", ["--target", "127.0.0.1:3000", "--max-request-body", "10q"], "10q"],
    ["a bad boolean", ["--target", "127.0.0.1:3000", "--strip-path-prefix=maybe"], "maybe"],
    ["a bad host", ["--target", "127.0.0.1:3000", "--host", "bad host!"], "bad host!"],
  ] as const) {
    test(`deploy rejects ${label}, naming the value, before contacting any server`, async () => {
      const result = await runCli(["deploy", "web", ...args, "--socket", nowhere]);
      expect(result.code).toBe(1);
      expect(result.stderr).toStartWith("Error: ");
      expect(result.stderr.split("\n")[0]).toContain(value);
      expect(result.stderr).not.toContain("cannot reach");
    }, SLOW_TEST);
  }

  test("good durations, sizes and targets pass validation (and only then is the server contacted)", async () => {
    for (const extra of [
      ["--deploy-timeout", "500ms"],
      ["--deploy-timeout", "1m30s"],
      ["--drain-timeout", "2"],
      ["--target-timeout", "1h"],
      ["--health-check-interval", "2m"],
      ["--max-request-body", "10m"],
      ["--buffer-memory", "512k"],
      ["--target", "web-1:3000,[::1]:8080", "--target", "app"],
    ]) {
      expectUnreachable(await runCli(["deploy", "web", "--target", "127.0.0.1:3000", ...extra, "--socket", nowhere]));
    }
  }, SLOW_TEST);

  test("an unknown flag is a usage error naming it, with the usage printed", async () => {
    const result = await runCli(["deploy", "web", "--target", "127.0.0.1:3000", "--no-such-flag", "--socket", nowhere]);
    expect(result.code).toBe(1);
    expect(result.stderr).toStartWith("Error: ");
    expect(result.stderr.split("\n")[0]).toContain("--no-such-flag");
    expect(result.stderr).toMatch(/usage/i);
    expect(result.stderr).toContain("--target");
  }, SLOW_TEST);

  test("a missing SERVICE is a usage error", async () => {
    const result = await runCli(["deploy", "--target", "127.0.0.1:3000", "--socket", nowhere]);
    expect(result.code).toBe(1);
    expect(result.stderr).toStartWith("Error: ");
    expect(result.stderr.split("\n")[0]).toContain("SERVICE");
    expect(result.stderr).toMatch(/usage/i);
    const remove = await runCli(["remove", "--socket", nowhere]);
    expect(remove.code).toBe(1);
    expect(remove.stderr.split("\n")[0]).toContain("SERVICE");
    expect(remove.stderr).toMatch(/usage/i);
  }, SLOW_TEST);

  test("a flag missing its value is a usage error naming the flag", async () => {
    const result = await runCli(["deploy", "web", "--socket", nowhere, "--target"]);
    expect(result.code).toBe(1);
    expect(result.stderr.split("\n")[0]).toContain("--target");
    expect(result.stderr).not.toContain("cannot reach");
  }, SLOW_TEST);

  test("deploy without any --target is a usage error naming --target", async () => {
    const result = await runCli(["deploy", "web", "--socket", nowhere]);
    expect(result.code).toBe(1);
    expect(result.stderr.split("\n")[0]).toBe("Error: --target is required");
    expect(result.stderr).toMatch(/usage/i);
    expect(result.stderr).not.toContain("cannot reach");
  }, SLOW_TEST);

  test("help headings name the full command, SERVICE shows as required, and piped help has no colour codes", async () => {
    const env = { NO_COLOR: undefined, TERM: "xterm-256color", CI: undefined, TEST: undefined };
    for (const args of [["help", "rollout", "set"], ["rollout", "set", "--help"], ["rollout", "set", "web", "--help"]]) {
      const result = await runCli(args, env);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain("USAGE parachute rollout set [OPTIONS] SERVICE");
      expect(result.stdout).not.toContain("\x1b[");
    }
    const missing = await runCli(["deploy"], env);
    expect(missing.stderr).toContain("USAGE parachute deploy [OPTIONS] SERVICE");
    expect(missing.stderr).not.toContain("\x1b[");
  }, SLOW_TEST);

  test("no command, or a command group without its subcommand, is an `Error:` with the usage", async () => {
    for (const args of [[], ["rollout"]]) {
      const result = await runCli(args);
      expect(result.code).toBe(1);
      expect(result.stderr.split("\n")[0]).toBe("Error: missing command");
      expect(result.stderr).toMatch(/usage/i);
    }
  }, SLOW_TEST);
});

describe("with a server", () => {
  let proxy: Proxy;
  const backends: Backend[] = [];
  const backend = (name: string) => {
    const b = startBackend(name);
    backends.push(b);
    return b;
  };

  beforeAll(async () => {
    proxy = await Proxy.start();
  }, HOOK_TIMEOUT);

  afterAll(async () => {
    await proxy?.stop();
    await Promise.all(backends.map((b) => b.stop()));
  }, HOOK_TIMEOUT);

  const fast = ["--health-check-interval", "100ms"];

  async function forwardedPath(host: string, pathAndQuery: string): Promise<string> {
    const res = await proxy.fetch(pathAndQuery, { host });
    expect(res.status).toBe(200);
    const url = new URL(((await res.json()) as { url: string }).url);
    return url.pathname + url.search;
  }

  test("remove of an unknown service: Error: service not found", async () => {
    const result = await proxy.cli(["remove", "nosuch"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("Error: service not found\n");
  }, SLOW_TEST);

  test("list prints a table with one row per service and target, and --json", async () => {
    const a = backend("list-a");
    const b = backend("list-b");
    const deployed = await proxy.cli(["deploy", "listed", "--host", "list.cli.test", "--target", `${a.address},${b.address}`, ...fast]);
    expect(deployed.code).toBe(0);

    const table = await proxy.cli(["list"]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]!.trim().split(/\s+/)).toEqual(["SERVICE", "HOST", "PATH", "TARGET", "STATE", "TLS"]);
    const rows = lines.slice(1).map((l) => l.trim().split(/\s+/)).filter((r) => r[0] === "listed");
    expect(rows).toEqual([
      ["listed", "list.cli.test", "/", a.address, "healthy", "no"],
      ["listed", "list.cli.test", "/", b.address, "healthy", "no"],
    ]);
    // Columns are aligned: every cell of a column starts at the same offset.
    const targetColumn = lines[0]!.indexOf("TARGET");
    for (const line of lines.slice(1)) expect(line.slice(targetColumn)).toMatch(/^\S/);

    const json = await proxy.cli(["list", "--json"]);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { services: { name: string; hosts: string[]; targets: { address: string; state: string }[] }[] };
    const listed = parsed.services.find((s) => s.name === "listed");
    expect(listed?.hosts).toEqual(["list.cli.test"]);
    expect(listed?.targets.map((t) => [t.address, t.state])).toEqual([
      [a.address, "healthy"],
      [b.address, "healthy"],
    ]);
  }, SLOW_TEST);

  test("kamal-proxy's names: `ls` is `list`; `rm SERVICE` without --target points to `remove`, and removes nothing", async () => {
    const a = backend("alias-a");
    expect((await proxy.cli(["deploy", "aliased", "--host", "alias.cli.test", "--target", a.address, ...fast])).code).toBe(0);
    const ls = await proxy.cli(["ls", "--json"]);
    const list = await proxy.cli(["list", "--json"]);
    expect(ls.code).toBe(0);
    expect(JSON.parse(ls.stdout)).toEqual(JSON.parse(list.stdout));
    expect((JSON.parse(ls.stdout) as { services: { name: string }[] }).services.map((s) => s.name)).toContain("aliased");

    const rm = await proxy.cli(["rm", "aliased"]);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toMatch(/^Error: --target is required\nTo remove the whole service aliased and free its hosts, use: parachute remove aliased\n\n[\s\S]*USAGE parachute rm/);
    expect((await proxy.fetch("/echo", { host: "alias.cli.test" })).status).toBe(200);
  }, SLOW_TEST);

  test("boolean flags: --flag, --flag=true, --flag=false, --no-flag", async () => {
    const app = backend("bools");
    const host = "bools.cli.test";
    const cases: [string[], string][] = [
      [["--strip-path-prefix=false"], "/api/x?q=1"],
      [["--strip-path-prefix"], "/x?q=1"],
      [["--no-strip-path-prefix"], "/api/x?q=1"],
      [["--strip-path-prefix=true"], "/x?q=1"],
    ];
    for (const [flags, expected] of cases) {
      const result = await proxy.cli(["deploy", "bools", "--host", host, "--path-prefix", "/api", "--target", app.address, ...flags, ...fast]);
      expect(result.code).toBe(0);
      expect(await forwardedPath(host, "/api/x?q=1")).toBe(expected);
    }
  }, SLOW_TEST);

  test("--force=false and --no-force do not skip health checks; --force=true does", async () => {
    const sick = backend("sick");
    sick.setHealth(500);
    for (const flag of ["--force=false", "--no-force"]) {
      const result = await proxy.cli(["deploy", "forcebool", "--target", sick.address, flag, "--deploy-timeout", "300ms", ...fast, "--host", "force.cli.test"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`target ${sick.address} failed to become healthy`);
    }
    const forced = await proxy.cli(["deploy", "forcebool", "--target", sick.address, "--force=true", "--deploy-timeout", "300ms", ...fast, "--host", "force.cli.test"]);
    expect(forced.code).toBe(0);
  }, SLOW_TEST);

  test("list flags take commas and repetition: --target a,b and --host x --host y,z", async () => {
    const a = backend("comma-a");
    const b = backend("comma-b");
    const result = await proxy.cli([
      "deploy",
      "commas",
      "--target",
      `${a.address},${b.address}`,
      "--host",
      "one.cli.test",
      "--host",
      "two.cli.test,three.cli.test",
      ...fast,
    ]);
    expect(result.code).toBe(0);
    const listed = (await proxy.listJson()).find((s) => s.name === "commas");
    expect(listed?.targets.map((t) => t.address)).toEqual([a.address, b.address]);
    expect([...listed!.hosts].sort()).toEqual(["one.cli.test", "three.cli.test", "two.cli.test"]);
    const served = new Set<string>();
    for (const host of ["one.cli.test", "two.cli.test", "three.cli.test", "one.cli.test"]) {
      const res = await proxy.fetch("/echo", { host });
      expect(res.status).toBe(200);
      served.add(res.headers.get("x-backend")!);
      await res.text();
    }
    expect([...served].sort()).toEqual(["comma-a", "comma-b"]);
  }, SLOW_TEST);

  test("a client error from the server is exit 1 with one Error: line", async () => {
    const a = backend("conflict-a");
    expect((await proxy.cli(["deploy", "owner", "--host", "taken.cli.test", "--target", a.address, ...fast])).code).toBe(0);
    const result = await proxy.cli(["deploy", "intruder", "--host", "taken.cli.test", "--target", a.address, ...fast]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("Error: host is used by another service\n");
  }, SLOW_TEST);
});
