// State and process lifecycle (README "Configuration", "State"): the state file, restarts
// after a crash, corrupt state, graceful shutdown, the admin socket and ports.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { usePerTestProcesses } from "./support/fixture.ts";
import { headerValue, RawConnection, requestHead } from "./support/raw-client.ts";
import { Proxy, freePort, runCli, tempDir, waitFor, SLOW_TEST } from "./support/proxy.ts";

const { startProxy, backend, onCleanup } = usePerTestProcesses();

async function deployOk(proxy: Proxy, service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, "--health-check-interval", "100ms", ...args]);
  expect(result.stderr).not.toContain("Error");
  expect(result.code).toBe(0);
}

async function get(proxy: Proxy, pathAndQuery: string, host?: string, headers: Record<string, string> = {}) {
  const res = await proxy.fetch(pathAndQuery, { host, headers });
  const body = await res.text();
  return { status: res.status, backend: res.headers.get("x-backend"), body };
}

/** Arguments for a second `run` that must fail before it starts (bounded, in case it does not). */
function runArgs(options: { httpPort?: number; stateDir: string; socket: string }): string[] {
  return [
    "run",
    "--http-port",
    String(options.httpPort ?? 0),
    "--https-port",
    "0",
    "--bind",
    "127.0.0.1",
    "--state-dir",
    options.stateDir,
    "--socket",
    options.socket,
  ];
}

test("the state is persisted after deploy as valid JSON in <state-dir>/parachute.state", async () => {
  const stateDir = path.join(tempDir(), "nested", "state");
  const proxy = await startProxy({ stateDir, socket: path.join(tempDir(), "admin.sock") });
  // The state directory is created, private to its owner.
  expect(fs.statSync(stateDir).mode & 0o777).toBe(0o700);
  // The admin socket is private too.
  expect(fs.statSync(proxy.socket).mode & 0o777).toBe(0o600);

  const app = backend("persisted");
  await deployOk(proxy, "persisted", ["--host", "persist.test", "--target", app.address, "--path-prefix", "/api"]);
  expect(fs.existsSync(proxy.stateFile)).toBe(true);
  const state = JSON.parse(fs.readFileSync(proxy.stateFile, "utf8"));
  const text = JSON.stringify(state);
  expect(text).toContain("persisted");
  expect(text).toContain("persist.test");
  expect(text).toContain(app.address);
  expect(text).toContain("/api");
  // Written atomically: no temp files left behind.
  expect(fs.readdirSync(stateDir).filter((f) => f.startsWith("parachute.state") && f !== "parachute.state")).toEqual([]);

  // remove is persisted too.
  const removed = await proxy.cli(["remove", "persisted"]);
  expect(removed.code).toBe(0);
  expect(fs.readFileSync(proxy.stateFile, "utf8")).not.toContain(app.address);
}, SLOW_TEST);

test("after kill -9 a restarted server serves the same routes at once, replacing the stale socket", async () => {
  const proxy = await startProxy();
  const web = backend("web");
  const api = backend("api");
  await deployOk(proxy, "web", ["--host", "www.restart.test", "--target", web.address]);
  await deployOk(proxy, "api", ["--host", "www.restart.test", "--path-prefix", "/api", "--target", api.address]);
  expect((await get(proxy, "/api/users?id=7", "www.restart.test")).backend).toBe("api");

  expect(await proxy.kill("SIGKILL")).not.toBe(0);
  // The crash left the socket file behind.
  expect(fs.existsSync(proxy.socket)).toBe(true);

  await proxy.spawn(); // resolves at `Server started`
  // The very first requests after the start are served, with the saved options (prefix stripped).
  const [first, second] = await Promise.all([get(proxy, "/api/users?id=7", "www.restart.test"), get(proxy, "/home", "www.restart.test")]);
  expect(first.status).toBe(200);
  expect(first.backend).toBe("api");
  const forwarded = new URL(JSON.parse(first.body).url);
  expect(forwarded.pathname + forwarded.search).toBe("/users?id=7");
  expect(second).toMatchObject({ status: 200, backend: "web" });
  expect((await get(proxy, "/home", "other.test")).status).toBe(404);

  // The new server owns the socket: clients reach it.
  const services = await proxy.listJson();
  expect(services.map((s) => s.name).sort()).toEqual(["api", "web"]);
  expect(services.find((s) => s.name === "web")?.targets.map((t) => t.address)).toEqual([web.address]);
}, SLOW_TEST);

for (const [kind, garbage] of [
  ["not JSON", "{ this is not json"],
  ["JSON of the wrong shape", JSON.stringify({ version: 1, services: [{ name: 42, targets: "nope" }] })],
] as const) {
  test(`a corrupt state file (${kind}) is reported, kept aside, and the server starts empty`, async () => {
    const stateDir = tempDir();
    fs.writeFileSync(path.join(stateDir, "parachute.state"), garbage);
    const proxy = await startProxy({ stateDir });

    const problem = proxy.logs.find((l) => l.level === "error" && JSON.stringify(l).includes("parachute.state"));
    expect(problem).toBeDefined();
    expect(JSON.stringify(problem).toLowerCase()).toContain("corrupt");

    const aside = fs.readdirSync(stateDir).filter((f) => f.startsWith("parachute.state.corrupt-"));
    expect(aside.length).toBe(1);
    expect(fs.readFileSync(path.join(stateDir, aside[0]!), "utf8")).toBe(garbage);

    expect(await proxy.listJson()).toEqual([]);
    expect((await get(proxy, "/")).status).toBe(404);

    // And it works normally from there: a deploy writes a fresh, valid state file.
    const app = backend("after-corrupt");
    await deployOk(proxy, "fresh", ["--target", app.address]);
    expect(JSON.parse(fs.readFileSync(proxy.stateFile, "utf8"))).toBeTruthy();
    expect((await get(proxy, "/")).backend).toBe("after-corrupt");
  }, SLOW_TEST);
}

test("SIGTERM lets an in-flight request finish and exits 0; the state survives", async () => {
  const proxy = await startProxy();
  const app = backend("graceful");
  await deployOk(proxy, "graceful", ["--target", app.address]);

  const slow = get(proxy, "/slow?ms=1500");
  // A second one on a raw keep-alive connection, to see its answer's head.
  const raw = await RawConnection.open(proxy.httpPort);
  raw.write(requestHead("GET", "/slow?ms=1500", [["Host", "localhost"]]));
  await waitFor("the slow requests to reach the target", () => app.inflight === 2, { timeoutMs: 5000 });

  const mark = proxy.logMark();
  const exited = proxy.kill("SIGTERM");
  await proxy.waitForLog((l) => l.msg === "Shutting down", 5000, mark);
  // It stops accepting: a new connection is refused while the slow request is still running.
  const refused = await proxy.fetch("/echo", { headers: { connection: "close" } }).then(
    (res) => `answered ${res.status}`,
    (error: Error) => error.message,
  );
  expect(refused).not.toStartWith("answered");
  expect(app.inflight).toBe(2);

  expect(await exited).toBe(0);
  expect(await slow).toMatchObject({ status: 200, backend: "graceful", body: "slow from graceful" });
  // Answered during the stop: it says the connection closes, so the client sends nothing more on it.
  const rawHead = await raw.readHead(1000);
  expect([rawHead.status, headerValue(rawHead, "connection")]).toEqual([200, "close"]);
  raw.close();
  // It exits once that request is done (its keep-alive connection is closed
  // after the answer), not at the end of the 10 s grace period (which cuts
  // what is left and logs graceful: false).
  expect((await proxy.waitForLog((l) => l.msg === "Server stopped", 1000, mark)).graceful).toBe(true);

  await proxy.spawn();
  expect((await get(proxy, "/echo")).backend).toBe("graceful");
}, 20_000);

test("a second run on the socket of a live server fails with a clear error", async () => {
  const proxy = await startProxy();
  const other = tempDir();
  const second = await runCli(runArgs({ stateDir: other, socket: proxy.socket }), {}, { timeoutMs: 10_000 });
  expect(second.timedOut).toBeUndefined();
  expect(second.code).toBe(1);
  expect(second.stderr).toStartWith("Error: ");
  expect(second.stderr).toContain(proxy.socket);
  expect(second.stderr.toLowerCase()).toContain("already running");
  // The first server is untouched and still owns its socket.
  expect(proxy.exitCode).toBeNull();
  expect((await proxy.cli(["list"])).code).toBe(0);
}, SLOW_TEST);

test("a taken HTTP port is exit 1 with a clear error, before anything is restored", async () => {
  const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  onCleanup(() => holder.stop(true));
  // A state with a service in it, which a start that gets that far restores (and says so).
  const source = await startProxy();
  await deployOk(source, "kept", ["--target", backend("kept").address]);
  const dir = tempDir();
  fs.copyFileSync(source.stateFile, path.join(dir, "parachute.state"));
  // One process: with workers the sockets are opened before the state is read anyway.
  const args = [...runArgs({ httpPort: holder.port, stateDir: dir, socket: path.join(dir, "admin.sock") }), "--workers", "1"];
  const result = await runCli(args, {}, { timeoutMs: 10_000 });
  expect(result.timedOut).toBeUndefined();
  expect(result.code).toBe(1);
  expect(result.stderr).toStartWith("Error: ");
  expect(result.stderr).toContain(String(holder.port));
  expect(result.stderr.toLowerCase()).toContain("in use");
  expect(result.stdout).not.toContain("State restored");
  // It did not leave a socket behind that a client could mistake for a server.
  const client = await runCli(["list", "--socket", path.join(dir, "admin.sock")]);
  expect(client.code).toBe(1);
}, SLOW_TEST);

test("an HTTP port taken by another running parachute is exit 1 too (no silent port sharing)", async () => {
  const port = await freePort();
  const first = await startProxy({ args: ["--http-port", String(port)], omitDefaults: ["http-port"] });
  expect(first.httpPort).toBe(port);
  // A second server on the same port must refuse to start; if it does start,
  // the kernel would split the port's connections between the two servers.
  const outcome = await Proxy.start({ args: ["--http-port", String(port)], omitDefaults: ["http-port"] }).then(
    async (second) => {
      await second.stop();
      return `started and is listening on ${second.httpPort} too`;
    },
    (error: Error) => error.message,
  );
  expect(outcome).toContain("parachute exited with 1 before starting");
  expect(outcome).toContain(String(port));
}, SLOW_TEST);

test.skipIf(!fs.existsSync("/proc/self/status"))("a state directory that cannot be written is exit 1 at start, naming it", async () => {
  // /proc/self exists but takes no new files, even for root.
  const dir = tempDir();
  const result = await runCli(runArgs({ stateDir: "/proc/self", socket: path.join(dir, "admin.sock") }), {}, { timeoutMs: 10_000 });
  expect(result.timedOut).toBeUndefined();
  expect(result.code).toBe(1);
  expect(result.stderr).toStartWith("Error: state directory /proc/self is not writable");
  expect(result.stdout).not.toContain("Server started");
});

test("when the state cannot be saved after a switch, the deploy still completes and warns: the change is live", async () => {
  const stateDir = path.join(tempDir(), "state");
  const proxy = await startProxy({ stateDir, socket: path.join(tempDir(), "admin.sock") });
  const v1 = backend("unsaved-v1");
  const v2 = backend("unsaved-v2");
  await deployOk(proxy, "unsaved", ["--host", "unsaved.test", "--target", v1.address]);
  // The disk goes away under the running server (as a full or failed disk would).
  fs.rmSync(stateDir, { recursive: true, force: true });
  const result = await proxy.cli(["deploy", "unsaved", "--host", "unsaved.test", "--target", v2.address, "--health-check-interval", "100ms"]);
  expect(result.code).toBe(0);
  expect(result.stderr).toContain("Warning: cannot save state");
  expect(result.stderr).not.toContain("Error");
  expect(await get(proxy, "/", "unsaved.test")).toMatchObject({ status: 200, backend: "unsaved-v2" });
  expect(proxy.exitCode).toBeNull();
}, SLOW_TEST);

test("every other command that changes the state warns the same way when it cannot be saved, and its change is live", async () => {
  const stateDir = path.join(tempDir(), "state");
  const proxy = await startProxy({ stateDir, socket: path.join(tempDir(), "admin.sock") });
  const host = "unsaved-all.test";
  const active = backend("unsaved-all");
  const spare = backend("unsaved-spare");
  const canary = backend("unsaved-canary");
  await deployOk(proxy, "all", ["--host", host, "--target", active.address]);
  fs.rmSync(stateDir, { recursive: true, force: true });

  const state = async () => (await proxy.listJson()).find((s) => s.name === "all");
  const expectWarned = async (args: string[], done: string) => {
    const result = await proxy.cli(args);
    expect({ args, code: result.code }).toEqual({ args, code: 0 });
    expect(result.stderr).toContain("Warning: cannot save state (");
    expect(result.stderr).toContain("the change is live but will not survive a restart");
    expect(result.stderr).not.toContain("Error");
    expect(result.stdout).toContain(done);
  };
  await expectWarned(["pause", "all", "--max-pause", "5s"], "Paused all");
  expect((await state())?.state).toBe("paused");
  await expectWarned(["resume", "all"], "Resumed all");
  await expectWarned(["stop", "all", "--message", "closed"], "Stopped all");
  expect((await get(proxy, "/", host)).status).toBe(503);
  await expectWarned(["resume", "all"], "Resumed all");
  expect(await get(proxy, "/", host)).toMatchObject({ status: 200, backend: "unsaved-all" });
  await expectWarned(["add", "all", "--target", spare.address], `Added ${spare.address} to all`);
  await expectWarned(["rm", "all", "--target", spare.address], `Removed ${spare.address} from all`);
  await expectWarned(["rollout", "deploy", "all", "--target", canary.address], "Rollout targets of all");
  await expectWarned(["rollout", "set", "all", "--list", "beta"], "Rollout of all: 0% of clients plus beta");
  expect(await get(proxy, "/", host, { cookie: "parachute-rollout=beta" })).toMatchObject({ status: 200, backend: "unsaved-canary" });
  await expectWarned(["rollout", "stop", "all"], "Rollout of all stopped");
  expect(await get(proxy, "/", host, { cookie: "parachute-rollout=beta" })).toMatchObject({ status: 200, backend: "unsaved-all" });
  await expectWarned(["remove", "all"], "Removed all");
  expect(await proxy.listJson()).toEqual([]);
  expect(proxy.logs.filter((l) => l.msg === "Cannot save state").length).toBeGreaterThanOrEqual(9);
  expect(proxy.exitCode).toBeNull();
}, SLOW_TEST);

test("a hand-edited state giving one host and path to two services restores only the first, and logs the other", async () => {
  const proxy = await startProxy();
  const app = backend("first-owner");
  await deployOk(proxy, "first", ["--host", "twice.test", "--target", app.address]);
  await proxy.kill("SIGTERM");
  const state = JSON.parse(fs.readFileSync(proxy.stateFile, "utf8"));
  state.services.push({ ...state.services[0], name: "second" });
  fs.writeFileSync(proxy.stateFile, JSON.stringify(state));

  await proxy.spawn();
  expect((await proxy.listJson()).map((s) => s.name)).toEqual(["first"]);
  expect((await get(proxy, "/", "twice.test")).backend).toBe("first-owner");
  const skipped = await proxy.waitForLog((l) => l.msg === "Saved service skipped: its host is used by another service", 5000);
  expect(skipped).toMatchObject({ service: "second", owner: "first" });
}, SLOW_TEST);
