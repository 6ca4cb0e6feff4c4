import { afterAll, afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as v from "valibot";
import { DeployRequest, PauseRequest, RollbackRequest, RolloutSetRequest, ServiceRequest, StopRequest, TargetsRequest } from "../admin/requests.ts";
import { HistoryStore } from "../state/history-store.ts";
import { StateStore } from "../state/store.ts";
import { CommandError } from "./command-error.ts";
import { Registry } from "./registry.ts";

const app = { hostname: "127.0.0.1", port: 0, fetch: (req: Request) => new Response("", { status: new URL(req.url).pathname === "/up" ? 200 : 500 }) };
const backends = [Bun.serve(app), Bun.serve(app)];
const [A, B] = backends.map((b) => `127.0.0.1:${b.port}`) as [string, string];

const dirs: string[] = [];
const registries: Registry[] = [];
function registry(dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-registry-"))) {
  dirs.push(dir);
  const store = new StateStore(dir);
  const r = new Registry(store);
  registries.push(r);
  return { r, store, dir };
}
afterEach(() => {
  for (const r of registries.splice(0)) r.dispose();
});
afterAll(() => {
  for (const b of backends) b.stop(true);
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

const lines: string[] = [];
const progress = (line: string) => void lines.push(line);
const deploy = (body: Record<string, unknown>) => v.parse(DeployRequest, { force: true, ...body });

async function refused(promise: Promise<unknown>): Promise<CommandError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CommandError);
  return error as CommandError;
}

test("deploy creates a service, routes its hosts to it and saves it", async () => {
  const { r, store } = registry();
  await r.deploy(deploy({ service: "web", targets: [A], hosts: ["app.test"] }), progress);
  expect(r.router.match("app.test", "/")?.service.name).toBe("web");
  expect(r.router.match("other.test", "/")).toBeUndefined();
  expect(r.list()).toEqual([
    { name: "web", hosts: ["app.test"], pathPrefixes: ["/"], tls: false, state: "running", targets: [{ address: A, state: "healthy", role: "writer", lastCheck: "not checked yet" }] },
  ]);
  const saved = store.load().state.services;
  expect(saved.map((s) => [s.name, s.targets, s.mode])).toEqual([["web", [A], "running"]]);
});

test("a deploy health-checks new targets unless forced, and fails naming one that does not pass", async () => {
  const { r } = registry();
  lines.length = 0;
  await r.deploy(deploy({ service: "web", targets: [A], force: false }), progress);
  expect(lines).toContain(`Target ${A}: healthy (GET /up returned 200)`);
  const error = await refused(r.deploy(deploy({ service: "web", targets: [B], force: false, healthCheckPath: "/broken", deployTimeout: "50ms" }), progress));
  expect(error.status).toBe(422);
  expect(error.message).toBe(`target ${B} failed to become healthy within 50ms (last check: GET /broken returned 500)`);
  expect(r.service("web")!.targets.map((t) => t.address)).toEqual([A]); // nothing changed
});

test("a redeploy replaces the targets and drains the old ones", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  lines.length = 0;
  await r.deploy(deploy({ service: "web", targets: [B], drainTimeout: "5s" }), progress);
  expect(r.service("web")!.targets.map((t) => t.address)).toEqual([B]);
  expect(lines).toEqual([`Draining ${A} (up to 5s)`]);
  expect(r.service("web")!.draining.size).toBe(0);
  expect(r.service("web")!.kept.size).toBe(0);
});

test("deploy refuses bad combinations before changing anything", async () => {
  const { r } = registry();
  const notExecutable = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "parachute-hook-")), "hook.sh");
  fs.writeFileSync(notExecutable, "#!/bin/sh\n", { mode: 0o644 });
  const cases: [Record<string, unknown>, string][] = [
    [{ tls: true }, "--tls needs at least one --host (or --tls-on-demand-url)"],
    [{ tlsOnDemandUrl: "/allow" }, "--tls-on-demand-url needs --tls"],
    [{ tls: true, tlsOnDemandUrl: "/allow", hosts: ["a.test"], tlsCertificatePath: "/c.pem", tlsPrivateKeyPath: "/k.pem" }, "--tls-on-demand-url cannot be combined with --tls-certificate-path"],
    [
      { tls: true, hosts: ["*.example.com"] },
      "wildcard host *.example.com needs DNS-01 (--tls-dns-hook CMD) or a custom certificate (--tls-certificate-path and --tls-private-key-path): ACME http-01 and tls-alpn-01 cannot issue wildcards",
    ],
    [
      { tls: true, hosts: ["*.example.com"], tlsChallenge: "tls-alpn-01" },
      "wildcard host *.example.com needs DNS-01 (--tls-dns-hook CMD) or a custom certificate (--tls-certificate-path and --tls-private-key-path): ACME tls-alpn-01 cannot issue wildcards",
    ],
    [{ tls: true, hosts: ["*.example.com"], tlsChallenge: "dns-01" }, "--tls-challenge dns-01 needs --tls-dns-hook CMD"],
    [{ tls: true, hosts: ["a.test"], tlsChallenge: "http-01", tlsDnsHook: "/bin/true" }, "--tls-dns-hook is for --tls-challenge dns-01, not http-01"],
    [{ tls: true, hosts: ["a.test"], tlsChallenge: "auto", tlsDnsHook: "/bin/true" }, "--tls-dns-hook is for --tls-challenge dns-01, not auto"],
    [{ tls: true, hosts: ["*.example.com"], tlsDnsHook: "/nonexistent/hook" }, "--tls-dns-hook /nonexistent/hook: no such file"],
    [{ tls: true, hosts: ["*.example.com"], tlsDnsHook: "/tmp" }, "--tls-dns-hook /tmp is not a file"],
    [{ tls: true, hosts: ["*.example.com"], tlsDnsHook: notExecutable }, `--tls-dns-hook ${notExecutable} is not executable`],
    [{ hosts: ["a.test"], canonicalHost: "b.test" }, 'canonical host "b.test" must be one of the service\'s hosts'],
    [{ hosts: ["a.test"], tlsCertificatePath: "/x.pem" }, "--tls-certificate-path and --tls-private-key-path go together (both or neither)"],
    [{ errorPages: "/nonexistent/pages" }, 'error pages directory "/nonexistent/pages" cannot be used: no such directory'],
    [{ hosts: ["a.test"], tlsCertificatePath: "/nonexistent/c.pem", tlsPrivateKeyPath: "/nonexistent/k.pem" }, "cannot read certificate /nonexistent/c.pem: ENOENT"],
  ];
  for (const [body, message] of cases) {
    const error = await refused(r.deploy(deploy({ service: "web", targets: [A], ...body }), progress));
    expect(error.message).toBe(message);
    expect(error.status).toBe(400);
  }
  expect(r.list()).toEqual([]);
});

test("a (host, path prefix) pair belongs to one service: another gets 409", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "web", targets: [A], hosts: ["app.test"], pathPrefixes: ["/", "/api"] }), progress);
  const error = await refused(r.deploy(deploy({ service: "api", targets: [B], hosts: ["app.test"], pathPrefixes: ["/api"] }), progress));
  expect(error.status).toBe(409);
  expect(error.message).toBe("host is used by another service");
  await r.deploy(deploy({ service: "admin", targets: [B], hosts: ["app.test"], pathPrefixes: ["/admin"] }), progress);
  expect(r.router.match("app.test", "/admin/x")?.service.name).toBe("admin");
  await r.remove(v.parse(ServiceRequest, { service: "web" }), progress);
  await r.deploy(deploy({ service: "api", targets: [B], hosts: ["app.test"], pathPrefixes: ["/api"] }), progress); // freed
  expect(r.router.match("app.test", "/api")?.service.name).toBe("api");
});

test("commands on a missing service are 404", async () => {
  const { r } = registry();
  const name = { service: "ghost" };
  for (const command of [
    r.remove(v.parse(ServiceRequest, name), progress),
    r.add(v.parse(TargetsRequest, { ...name, targets: [A] }), progress),
    r.pause(v.parse(PauseRequest, name), progress),
    r.resume(v.parse(ServiceRequest, name), progress),
  ]) {
    const error = await refused(command);
    expect([error.status, error.message]).toEqual([404, "service not found"]);
  }
});

test("add and rm: named refusals for present, unknown and last targets", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  expect((await refused(r.add(v.parse(TargetsRequest, { service: "web", targets: [A] }), progress))).message).toBe(`target ${A} is already in service web`);
  expect((await refused(r.rm(v.parse(TargetsRequest, { service: "web", targets: [B] }), progress))).message).toBe(`target ${B} is not in service web`);
  expect((await refused(r.rm(v.parse(TargetsRequest, { service: "web", targets: [A] }), progress))).message).toBe(
    'cannot remove the last target of service web (use "parachute remove web")',
  );
  await r.add(v.parse(TargetsRequest, { service: "web", targets: [B] }), progress);
  expect(r.service("web")!.targets.map((t) => t.address)).toEqual([A, B]);
  lines.length = 0;
  await r.rm(v.parse(TargetsRequest, { service: "web", targets: [A], drainTimeout: "2s" }), progress);
  expect(r.service("web")!.targets.map((t) => t.address)).toEqual([B]);
  expect(lines).toEqual([`Draining ${A} (up to 2s)`]);
});

test("pause, stop and resume change the mode and are saved", async () => {
  const { r, store } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  await r.pause(v.parse(PauseRequest, { service: "web", maxPause: "10s" }), progress);
  expect([r.service("web")!.pause.mode, r.service("web")!.pause.maxPauseMs]).toEqual(["paused", 10_000]);
  await r.stop(v.parse(StopRequest, { service: "web", message: "back soon" }), progress);
  expect(r.list()[0]).toMatchObject({ state: "stopped", message: "back soon" });
  expect(store.load().state.services[0]).toMatchObject({ mode: "stopped", stopMessage: "back soon" });
  await r.resume(v.parse(ServiceRequest, { service: "web" }), progress);
  expect(r.service("web")!.pause.mode).toBe("running");
  expect(store.load().state.services[0]!.mode).toBe("running");
});

test("rollout: set and stop need rollout targets; a split is set and cleared", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  const set = v.parse(RolloutSetRequest, { service: "web", percent: "20", list: ["beta", "beta"] });
  expect((await refused(r.rolloutSet(set, progress))).message).toBe('service web has no rollout targets (run "parachute rollout deploy" first)');
  expect((await refused(r.rolloutStop(v.parse(ServiceRequest, { service: "web" }), progress))).message).toBe("service web has no rollout in progress");
  await r.rolloutDeploy(v.parse(TargetsRequest, { service: "web", targets: [B] }), progress);
  await r.rolloutSet(set, progress);
  expect(r.list()[0]!.rollout).toEqual({ percent: 20, list: ["beta"] });
  expect(r.list()[0]!.targets).toEqual([
    { address: A, state: "healthy", role: "writer", lastCheck: "not checked yet" },
    { address: B, state: "healthy", role: "rollout", lastCheck: "GET /up returned 200" },
  ]);
  await r.rolloutStop(v.parse(ServiceRequest, { service: "web" }), progress);
  expect(r.list()[0]!.rollout).toBeUndefined();
  expect(r.service("web")!.split.percent).toBe(0);
});

test("a frozen registry refuses changes with 503 until thawed", async () => {
  const { r } = registry();
  await r.freeze("an upgrade is in progress");
  const error = await refused(r.deploy(deploy({ service: "web", targets: [A] }), progress));
  expect([error.status, error.message]).toEqual([503, "an upgrade is in progress"]);
  r.thaw();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  expect(r.list()).toHaveLength(1);
});

test("restore brings saved services back as they were", async () => {
  const { r, dir } = registry();
  await r.deploy(deploy({ service: "web", targets: [A], hosts: ["app.test"], pathPrefixes: ["/api"] }), progress);
  await r.stop(v.parse(StopRequest, { service: "web", message: "later" }), progress);
  const { r: again } = registry(dir);
  again.restore();
  expect(again.list()).toEqual(r.list());
  expect(again.router.match("app.test", "/api/x")?.service.name).toBe("web");
});

test("list is sorted by name; metrics see every target", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "zeta", targets: [A], hosts: ["z.test"] }), progress);
  await r.deploy(deploy({ service: "alpha", targets: [B], hosts: ["a.test"] }), progress);
  expect(r.list().map((s) => s.name)).toEqual(["alpha", "zeta"]);
  expect(r.targetHealth()).toEqual([
    { service: "alpha", target: B, state: "healthy" },
    { service: "zeta", target: A, state: "healthy" },
  ]);
  expect(r.inFlight()).toEqual([
    { service: "zeta", value: 0, paused: 0 },
    { service: "alpha", value: 0, paused: 0 },
  ]);
});

// ---------------------------------------------------------------- history and rollback

const rollback = (body: Record<string, unknown> = {}) => v.parse(RollbackRequest, { service: "web", ...body });
const targetsOf = (r: Registry) => r.service("web")!.targets.map((t) => t.address);

test("every command is recorded with its given options, targets before and after, duration and outcome", async () => {
  const { r, dir } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress, { targets: [A], hosts: [] });
  await r.add(v.parse(TargetsRequest, { service: "web", targets: [B] }), progress, { targets: [B] });
  await refused(r.rm(v.parse(TargetsRequest, { service: "web", targets: ["127.0.0.1:1"] }), progress, { targets: ["127.0.0.1:1"] }));
  await r.pause(v.parse(PauseRequest, { service: "web" }), progress);
  await r.resume(v.parse(ServiceRequest, { service: "web" }), progress);
  await r.remove(v.parse(ServiceRequest, { service: "web" }), progress);
  const records = r.historyOf("web")!;
  expect(records.map((x) => [x.command, x.outcome])).toEqual([
    ["deploy", "ok"],
    ["add", "ok"],
    ["rm", "failed"],
    ["pause", "ok"],
    ["resume", "ok"],
    ["remove", "ok"],
  ]);
  expect(records[0]).toMatchObject({ options: { targets: [A], hosts: [] }, before: { targets: [] }, after: { targets: [A] } });
  expect(records[1]).toMatchObject({ before: { targets: [A] }, after: { targets: [A, B] } });
  expect(records[2]).toMatchObject({ error: "target 127.0.0.1:1 is not in service web", before: { targets: [A, B] }, after: { targets: [A, B] } });
  // Without the fields as given (an internal caller), the validated request is recorded, defaults and all.
  expect(records[3]!.options).toEqual({ drainTimeout: 30_000, maxPause: 30_000 });
  expect(records[5]!.after).toEqual({ targets: [], readTargets: [], rolloutTargets: [] });
  for (const record of records) expect(Date.parse(record.time)).toBeGreaterThan(0);
  // Saved as it goes, and read back by a restart.
  const { r: again } = registry(dir);
  again.restore();
  expect(again.historyOf("web")).toEqual(records);
});

test("a command on a missing service, or one refused during an upgrade, leaves no record", async () => {
  const { r } = registry();
  await refused(r.pause(v.parse(PauseRequest, { service: "ghost" }), progress));
  expect(r.historyOf("ghost")).toBeUndefined();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  await r.freeze("upgrading");
  await refused(r.deploy(deploy({ service: "web", targets: [B] }), progress));
  expect(r.historyOf("web")!.length).toBe(1);
});

test("a deploy that fails on a new service is recorded, with nothing before or after", async () => {
  const { r } = registry();
  await refused(r.deploy(deploy({ service: "web", targets: [A], tls: true }), progress));
  expect(r.historyOf("web")).toEqual([expect.objectContaining({ command: "deploy", outcome: "failed", error: "--tls needs at least one --host (or --tls-on-demand-url)", after: { targets: [], readTargets: [], rolloutTargets: [] } })]);
});

test("rollback returns to the previous deploy's targets, health-checked, and a second one toggles back", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  await r.deploy(deploy({ service: "web", targets: [B], drainTimeout: "2s" }), progress);
  lines.length = 0;
  await r.rollback(rollback({ healthCheckInterval: "20ms" }), progress);
  expect(targetsOf(r)).toEqual([A]);
  expect(lines.some((l) => l.startsWith(`Rolling back web to ${A}, as deployed at `))).toBe(true);
  expect(lines).toContain(`Target ${A}: healthy (GET /up returned 200)`);
  expect(lines).toContain(`Draining ${B} (up to 2s)`);
  // The health-check option given is kept, as a deploy's would be; the rest stay.
  expect(r.service("web")!.options).toMatchObject({ healthCheckInterval: 20, drainTimeout: 2000 });
  await r.rollback(rollback(), progress);
  expect(targetsOf(r)).toEqual([B]);
  expect(r.historyOf("web")!.map((x) => [x.command, x.after.targets])).toEqual([
    ["deploy", [A]],
    ["deploy", [B]],
    ["rollback", [A]],
    ["rollback", [B]],
  ]);
});

test("rollback is refused with nothing changed without a previous deploy or when the previous targets fail their check", async () => {
  const { r, store } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  const none = await refused(r.rollback(rollback(), progress));
  expect([none.status, none.message]).toEqual([409, "service web has no previous deploy to roll back to"]);
  await r.deploy(deploy({ service: "web", targets: [B] }), progress);
  const before = JSON.stringify(store.load().state);
  const unhealthy = await refused(r.rollback(rollback({ healthCheckPath: "/broken", deployTimeout: "50ms" }), progress));
  expect(unhealthy.status).toBe(422);
  expect(unhealthy.message).toBe(`target ${A} failed to become healthy within 50ms (last check: GET /broken returned 500)`);
  expect(targetsOf(r)).toEqual([B]);
  expect(r.service("web")!.options.healthCheckPath).toBe("/up");
  expect(JSON.stringify(store.load().state)).toBe(before);
  expect(r.historyOf("web")!.at(-1)).toMatchObject({ command: "rollback", outcome: "failed", before: { targets: [B] }, after: { targets: [B] } });
  expect((await refused(r.rollback(rollback({ service: "ghost" }), progress))).status).toBe(404);
});

test("a history that cannot be saved warns the client; the command itself stands", async () => {
  const { r, dir } = registry();
  fs.mkdirSync(new HistoryStore(dir).file); // a directory where the file should be: the rename fails
  lines.length = 0;
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  expect(targetsOf(r)).toEqual([A]);
  expect(lines.some((l) => l.startsWith("Warning: cannot save the history"))).toBe(true);
});

test("a verify window over the limit puts the previous targets (the same objects) and settings back, and the deploy fails with a failed record", async () => {
  const { r, store } = registry();
  await r.deploy(deploy({ service: "web", targets: [A], hosts: ["app.test"] }), progress);
  const previous = r.service("web")!.targets[0]!;
  const running = r.deploy(deploy({ service: "web", targets: [B], hosts: ["app.test", "new.test"], verifyWindow: "10s", verifyMinRequests: "4" }), progress);
  for (let i = 0; r.service("web")!.targets[0]!.address !== B; i++) {
    if (i > 200) throw new Error("the deploy did not switch to B");
    await Bun.sleep(5);
  }
  const target = r.service("web")!.targets[0]!;
  // The old target is out of rotation but kept; the new one is counted.
  expect(r.service("web")!.draining.has(previous)).toBe(true);
  expect(r.service("web")!.kept.has(previous)).toBe(true);
  expect(r.routingState().services[0]!.verifying).toEqual({ window: target.tally!.window, targets: [B] });
  for (const status of [200, 500, 200, 502]) target.tally!.record(status, "/p");
  const error = await refused(running);
  expect(error.message).toBe(`error rate 50% of 4 requests to ${B} is over 5%; traffic is back on ${A} (first failures: 500 /p, 502 /p)`);
  expect(r.service("web")!.targets).toEqual([previous]);
  expect(r.service("web")!.draining.size).toBe(0);
  expect(r.service("web")!.kept.size).toBe(0);
  expect(r.router.match("new.test", "/")).toBeUndefined();
  expect(target.tally).toBeUndefined();
  expect(r.routingState().services[0]!.verifying).toBeUndefined();
  expect(store.load().state.services[0]!.targets).toEqual([A]);
  expect(r.historyOf("web")!.at(-1)).toMatchObject({ command: "deploy", outcome: "failed", before: { targets: [A] }, after: { targets: [A] }, error: error.message });
});

test("limits without a window are refused before anything changes", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "web", targets: [A] }), progress);
  const error = await refused(r.deploy(deploy({ service: "web", targets: [B], verifyMaxErrors: "1%" }), progress));
  expect(error.message).toBe("--verify-max-errors and --verify-min-requests need --verify-window");
  expect(r.service("web")!.targets.map((t) => t.address)).toEqual([A]);
});

test("a switch back keeps the deploy's options when another service took a previous host during the window", async () => {
  const { r } = registry();
  await r.deploy(deploy({ service: "web", targets: [A], hosts: ["old.test"] }), progress);
  const said: string[] = [];
  const running = r.deploy(deploy({ service: "web", targets: [B], hosts: ["new.test"], verifyWindow: "10s", verifyMinRequests: "1" }), (l) => void said.push(l));
  for (let i = 0; r.service("web")!.targets[0]!.address !== B; i++) {
    if (i > 200) throw new Error("the deploy did not switch to B");
    await Bun.sleep(5);
  }
  await r.deploy(deploy({ service: "api", targets: [A], hosts: ["old.test"] }), progress);
  r.service("web")!.targets[0]!.tally!.record(503, "/");
  await refused(running);
  expect(r.service("web")!.targets.map((t) => t.address)).toEqual([A]);
  expect(r.router.match("new.test", "/")?.service.name).toBe("web");
  expect(r.router.match("old.test", "/")?.service.name).toBe("api");
  expect(said).toContain("Warning: the previous hosts are now used by service api; the service keeps this deploy's options");
});
