// Deploy history and rollback (README "History and rollback"), end to end: a
// real parachute, real backends and the real CLI. Every kind of command is
// recorded, failures included; the history survives restarts and upgrades; a
// corrupt history file is set aside; `rollback` returns to the previous
// deploy's targets through the deploy's health check and drain, or changes
// nothing.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { usePerTestProcesses } from "./support/fixture.ts";
import { type Proxy, processAlive, tempDir, waitFor } from "./support/proxy.ts";
import { mustRun, restart, spawnCli } from "./support/traffic.ts";

const SLOW = 60_000;
const HOST = "app.test";
/** Quick checks, so that a deploy (and a rollback) is done in a few hundred ms. */
const FAST = ["--health-check-interval", "50ms"];

const { startProxy, backend } = usePerTestProcesses({ args: ["--workers", "1"] });

interface Record {
  time: string;
  command: string;
  options: { [field: string]: unknown };
  before: { targets: string[]; readTargets: string[]; rolloutTargets: string[] };
  after: { targets: string[]; readTargets: string[]; rolloutTargets: string[] };
  durationMs: number;
  outcome: "ok" | "failed";
  error?: string;
}

async function history(proxy: Proxy, service: string): Promise<Record[]> {
  const result = await mustRun(proxy, ["history", service, "--json"]);
  const parsed = JSON.parse(result.stdout) as { service: string; records: Record[] };
  expect(parsed.service).toBe(service);
  return parsed.records;
}

const historyFile = (proxy: Proxy) => path.join(proxy.stateDir, "history.json");

/** Which backend answers a request for the app now. */
async function answering(proxy: Proxy): Promise<string | number> {
  const res = await proxy.fetch("/echo", { host: HOST });
  const text = await res.text();
  return res.status === 200 ? (res.headers.get("x-backend") ?? text) : res.status;
}

test("every kind of command is recorded, failures included, with its options as given, targets before and after, duration and outcome", async () => {
  const proxy = await startProxy();
  const [a, b, c] = [backend("a"), backend("b"), backend("c")];
  const users = path.join(tempDir("parachute-users-"), "users.htpasswd");
  const hash = await Bun.password.hash("secret", { algorithm: "bcrypt", cost: 4 });
  fs.writeFileSync(users, `alice:${hash}\n`);

  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, "--deploy-timeout", "5s", "--basic-auth-file", users, ...FAST]);
  b.setHealth(500);
  const failed = await proxy.cli(["deploy", "app", "--host", HOST, "--target", b.address, "--deploy-timeout", "300ms", ...FAST]);
  expect(failed.code).toBe(1);
  b.setHealth(200);
  await mustRun(proxy, ["add", "app", "--target", b.address]);
  expect((await proxy.cli(["rm", "app", "--target", c.address])).code).toBe(1);
  await mustRun(proxy, ["rm", "app", "--target", b.address, "--drain-timeout", "1s"]);
  await mustRun(proxy, ["pause", "app", "--max-pause", "10s"]);
  await mustRun(proxy, ["stop", "app", "--message", "back soon"]);
  await mustRun(proxy, ["resume", "app"]);
  await mustRun(proxy, ["rollout", "deploy", "app", "--target", c.address]);
  await mustRun(proxy, ["rollout", "set", "app", "--percent", "10", "--list", "alice"]);
  await mustRun(proxy, ["rollout", "stop", "app"]);
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, ...FAST]);
  await mustRun(proxy, ["rollback", "app"]);
  await mustRun(proxy, ["remove", "app"]);

  const records = await history(proxy, "app");
  expect(records.map((r) => [r.command, r.outcome])).toEqual([
    ["deploy", "ok"],
    ["deploy", "failed"],
    ["add", "ok"],
    ["rm", "failed"],
    ["rm", "ok"],
    ["pause", "ok"],
    ["stop", "ok"],
    ["resume", "ok"],
    ["rollout deploy", "ok"],
    ["rollout set", "ok"],
    ["rollout stop", "ok"],
    ["deploy", "ok"],
    ["rollback", "ok"],
    ["remove", "ok"],
  ]);
  const none = { targets: [], readTargets: [], rolloutTargets: [] };
  const on = (...targets: string[]) => ({ targets, readTargets: [], rolloutTargets: [] });
  // The options as the CLI sent them: what was typed, no defaults; the file by name.
  expect(records[0]).toMatchObject({
    options: { hosts: [HOST], targets: [a.address], deployTimeout: "5s", basicAuthFile: users, healthCheckInterval: "50ms" },
    before: none,
    after: on(a.address),
  });
  expect(records[1]).toMatchObject({ before: on(a.address), after: on(a.address) });
  expect(records[1]!.error).toBe(`target ${b.address} failed to become healthy within 300ms (last check: GET /up returned 500)`);
  expect(records[1]!.durationMs).toBeGreaterThanOrEqual(300);
  expect(records[2]).toMatchObject({ before: on(a.address), after: on(a.address, b.address) });
  expect(records[3]!.error).toBe(`target ${c.address} is not in service app`);
  expect(records[4]).toMatchObject({ options: { targets: [b.address], drainTimeout: "1s" }, after: on(a.address) });
  expect(records[5]!.options).toEqual({ maxPause: "10s" });
  expect(records[6]!.options).toEqual({ message: "back soon" });
  expect(records[8]!.after).toEqual({ targets: [a.address], readTargets: [], rolloutTargets: [c.address] });
  expect(records[9]!.options).toEqual({ percent: "10", list: ["alice"] });
  expect(records[10]!.after).toEqual(on(a.address));
  expect(records[12]).toMatchObject({ before: on(b.address), after: on(a.address) });
  expect(records[13]!.after).toEqual(none);
  for (const r of records) {
    expect(Date.parse(r.time)).toBeGreaterThan(Date.now() - 120_000);
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  }
  // The credentials never reach the history.
  const saved = fs.readFileSync(historyFile(proxy), "utf8");
  expect(saved).not.toContain(hash);
  expect(saved).not.toContain("alice:");
  expect(fs.statSync(historyFile(proxy)).mode & 0o777).toBe(0o600);

  // The table: a removed service's history is kept and shown, newest last.
  const table = await mustRun(proxy, ["history", "app"]);
  const lines = table.stdout.trimEnd().split("\n");
  expect(lines[0]).toMatch(/^TIME\s+COMMAND\s+DURATION\s+TARGETS \(BEFORE → AFTER\)\s+OUTCOME$/);
  expect(lines).toHaveLength(records.length + 1);
  expect(lines[1]).toContain(`deploy --host ${HOST} --deploy-timeout 5s --basic-auth-file ${users}`);
  expect(lines[1]).toContain(`- → ${a.address}`);
  expect(lines[2]).toContain(`failed: target ${b.address} failed to become healthy within 300ms`);
  expect(lines[7]).toContain('stop --message "back soon"');
  expect(lines.at(-2)).toContain(`rollback`);
  expect(lines.at(-2)).toContain(`${b.address} → ${a.address}`);
  expect(lines.at(-1)).toMatch(new RegExp(`^\\S+\\s+remove\\s+\\S+\\s+${a.address} → -\\s+ok$`));

  // A name with neither a service nor a history is an error; a command on it leaves none.
  expect((await proxy.cli(["pause", "ghost"])).code).toBe(1);
  const unknown = await proxy.cli(["history", "ghost"]);
  expect(unknown.code).toBe(1);
  expect(unknown.stderr.trim()).toBe("Error: no service ghost and no history of one");
  // A usage error is recorded nowhere either: the server never saw the command.
  expect((await proxy.cli(["history"])).code).toBe(1);
}, SLOW);

test("the history survives a restart; a service restored from an older state without one has an empty history", async () => {
  const proxy = await startProxy();
  const [a, b] = [backend("a"), backend("b")];
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, ...FAST]);
  const before = await history(proxy, "app");
  expect(before).toHaveLength(2);

  expect(await restart(proxy)).toBe(0);
  expect(await history(proxy, "app")).toEqual(before);
  // And the restored history is the one a rollback reads.
  await mustRun(proxy, ["rollback", "app"]);
  expect(await answering(proxy)).toBe("a");

  // A state directory from before the history: the services come back, their history is empty.
  await proxy.kill("SIGTERM");
  fs.rmSync(historyFile(proxy));
  await restart(proxy);
  const empty = await mustRun(proxy, ["history", "app"]);
  expect(empty.stdout.trim()).toBe("No commands recorded for app yet.");
  expect(await history(proxy, "app")).toEqual([]);
  const refused = await proxy.cli(["rollback", "app"]);
  expect(refused.stderr.trim()).toBe("Error: service app has no previous deploy to roll back to");
}, SLOW);

for (const [kind, garbage] of [
  ["not JSON", "{ this is not json"],
  ["wrong shape", JSON.stringify({ version: 1, services: { app: [{ command: "deploy" }] } })],
] as const) {
  test(`a corrupt history file (${kind}) is set aside and logged; routing is unaffected and the history starts empty`, async () => {
    const stateDir = tempDir();
    const a = backend("a");
    const first = await startProxy({ stateDir });
    await mustRun(first, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
    await first.kill("SIGTERM");
    fs.writeFileSync(path.join(stateDir, "history.json"), garbage);

    const proxy = await startProxy({ stateDir });
    const problem = proxy.logs.find((l) => l.msg === "History file is corrupt; starting with an empty history");
    expect(problem).toBeDefined();
    expect(problem!.level).toBe("error");
    const aside = fs.readdirSync(stateDir).filter((f) => f.startsWith("history.json.corrupt-"));
    expect(aside).toHaveLength(1);
    expect(problem!.kept_as).toBe(path.join(stateDir, aside[0]!));
    expect(fs.readFileSync(path.join(stateDir, aside[0]!), "utf8")).toBe(garbage);
    // The routing state is its own file: the service is still served.
    expect(await answering(proxy)).toBe("a");
    expect(await history(proxy, "app")).toEqual([]);
    // And from here it records as usual.
    await mustRun(proxy, ["resume", "app"]);
    expect((await history(proxy, "app")).map((r) => r.command)).toEqual(["resume"]);
    expect(JSON.parse(fs.readFileSync(path.join(stateDir, "history.json"), "utf8")).version).toBe(1);
  }, SLOW);
}

test("rollback: the previous targets are health-checked, traffic goes to them, and the current ones drain what they have", async () => {
  const proxy = await startProxy();
  const [a, b] = [backend("a"), backend("b")];
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, "--drain-timeout", "10s", ...FAST]);
  expect(await answering(proxy)).toBe("b");

  // A request in flight on the current target while the rollback runs.
  const slow = proxy.fetch("/slow?ms=1500", { host: HOST });
  await waitFor("the slow request to reach b", () => b.inflight === 1);
  const checksBefore = a.healthChecks;
  const rollback = spawnCli(proxy, ["rollback", "app", "--deploy-timeout", "5s", "--drain-timeout", "5s"]);
  await rollback.waitForLine((l) => l.startsWith(`Rolling back app to ${a.address}, as deployed at `));
  await rollback.waitForLine((l) => l === `Target ${a.address}: healthy (GET /up returned 200)`);
  await rollback.waitForLine((l) => l === `Draining ${b.address} (up to 5s)`);
  // Switched: new requests go to a, while b finishes its request.
  expect(await answering(proxy)).toBe("a");
  expect(a.healthChecks).toBeGreaterThan(checksBefore);
  expect(b.inflight).toBe(1);
  const res = await slow;
  expect(res.status).toBe(200);
  expect(await res.text()).toBe("slow from b");
  const done = await rollback.done;
  expect(done.code).toBe(0);
  expect(done.stdout.trim()).toBe("Rolled back app");
  const list = await proxy.listJson();
  expect(list[0]!.targets).toEqual([{ address: a.address, state: "healthy", role: "writer", lastCheck: "GET /up returned 200" } as never]);
  expect(fs.readFileSync(proxy.stateFile, "utf8")).not.toContain(b.address);

  // A second rollback goes back again (a toggle).
  await mustRun(proxy, ["rollback", "app"]);
  expect(await answering(proxy)).toBe("b");
  const records = await history(proxy, "app");
  expect(records.slice(-2).map((r) => [r.command, r.outcome, r.before.targets, r.after.targets])).toEqual([
    ["rollback", "ok", [b.address], [a.address]],
    ["rollback", "ok", [a.address], [b.address]],
  ]);
  expect(records.at(-2)!.options).toEqual({ deployTimeout: "5s", drainTimeout: "5s" });
}, SLOW);

test("rollback is refused with exit 1 and nothing changed: no previous deploy, previous targets down or unhealthy", async () => {
  const proxy = await startProxy();
  const [a, b] = [backend("a"), backend("b")];
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
  const first = await proxy.cli(["rollback", "app"]);
  expect(first.code).toBe(1);
  expect(first.stderr.trim()).toBe("Error: service app has no previous deploy to roll back to");

  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, ...FAST]);
  const state = fs.readFileSync(proxy.stateFile, "utf8");
  const listed = JSON.stringify(await proxy.listJson());

  // The previous target answers its checks with 500.
  a.setHealth(500);
  const unhealthy = await proxy.cli(["rollback", "app", "--deploy-timeout", "300ms"]);
  expect(unhealthy.code).toBe(1);
  expect(unhealthy.stderr).toContain(`Error: target ${a.address} failed to become healthy within 300ms (last check: GET /up returned 500)`);
  expect(await answering(proxy)).toBe("b");
  expect(fs.readFileSync(proxy.stateFile, "utf8")).toBe(state);
  expect(JSON.stringify(await proxy.listJson())).toBe(listed);

  // The previous target is gone; a health-check flag given to the failed rollback is not kept.
  await a.stop();
  const gone = await proxy.cli(["rollback", "app", "--deploy-timeout", "300ms", "--health-check-path", "/other"]);
  expect(gone.code).toBe(1);
  expect(gone.stderr).toContain(`Error: target ${a.address} failed to become healthy within 300ms (last check: GET /other failed:`);
  expect(await answering(proxy)).toBe("b");
  expect(fs.readFileSync(proxy.stateFile, "utf8")).toBe(state);
  expect(JSON.stringify(await proxy.listJson())).toBe(listed);

  // An unknown service: the usual 404, and no history made up for it.
  const ghost = await proxy.cli(["rollback", "ghost"]);
  expect([ghost.code, ghost.stderr.trim()]).toEqual([1, "Error: service not found"]);
  expect((await proxy.cli(["history", "ghost"])).code).toBe(1);

  expect((await history(proxy, "app")).map((r) => [r.command, r.outcome])).toEqual([
    ["deploy", "ok"],
    ["rollback", "failed"],
    ["deploy", "ok"],
    ["rollback", "failed"],
    ["rollback", "failed"],
  ]);
}, SLOW);

test("with workers the control plane records each command once, and rollback switches every worker", async () => {
  const proxy = await startProxy({ args: ["--workers", "2"] });
  const [a, b] = [backend("a"), backend("b")];
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, ...FAST]);
  await mustRun(proxy, ["rollback", "app"]);
  // Many requests, over new connections: whichever worker takes one, a answers.
  const answers = new Set<string | number>();
  for (let i = 0; i < 20; i++) answers.add(await answering(proxy));
  expect([...answers]).toEqual(["a"]);
  expect(proxy.workerPids().size).toBe(2);
  const records = await history(proxy, "app");
  expect(records.map((r) => r.command)).toEqual(["deploy", "deploy", "rollback"]);
  const saved = JSON.parse(fs.readFileSync(historyFile(proxy), "utf8")) as { services: { app: Record[] } };
  expect(saved.services.app).toEqual(records);
  // No worker keeps a history file of its own: there is one file, no temporaries.
  expect(fs.readdirSync(proxy.stateDir).filter((f) => f.startsWith("history"))).toEqual(["history.json"]);
}, SLOW);

test("an upgrade hands the history over: the successor has every record and the old server writes none after", async () => {
  const proxy = await startProxy();
  const [a, b] = [backend("a"), backend("b")];
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, ...FAST]);
  const old = proxy.serverPid;
  // A request held by the old server while it drains keeps it alive past the handover.
  const slow = proxy.fetch("/slow?ms=1500", { host: HOST });
  await waitFor("the slow request to reach b", () => b.inflight === 1);
  const mark = proxy.logMark();
  const upgraded = await proxy.cli(["upgrade"]);
  expect(upgraded.code).toBe(0);
  await proxy.waitForLog((l) => l.msg === "Server started" && l.upgraded_from !== undefined, 10_000, mark);
  expect(proxy.serverPid).not.toBe(old);
  // The successor rolls back with the history it read; the old server, still draining, must not overwrite it.
  await mustRun(proxy, ["rollback", "app"]);
  expect((await slow).status).toBe(200);
  await proxy.waitForLog((l) => l.msg === "Server stopped" && l.upgraded_to !== undefined, 10_000, mark);
  expect(processAlive(proxy.serverPid)).toBe(true);
  const records = await history(proxy, "app");
  expect(records.map((r) => r.command)).toEqual(["deploy", "deploy", "rollback"]);
  const saved = JSON.parse(fs.readFileSync(historyFile(proxy), "utf8")) as { services: { app: Record[] } };
  expect(saved.services.app).toEqual(records);
  expect(await answering(proxy)).toBe("a");
}, SLOW);
