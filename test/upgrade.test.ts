// `parachute upgrade` (README "Upgrading parachute"): the server restarts
// from its executable path with its sockets handed over. Under continuous
// load of every kind no request may fail and no connection may be reset; a
// new executable that does not start changes nothing.
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { startBackend, type Backend } from "./support/backend.ts";
import { buildRequest, rawRequest } from "./support/net.ts";
import { freePort, parachuteCommand, processAlive, Proxy, runCli, tempDir, waitFor } from "./support/proxy.ts";
import { mustRun } from "./support/traffic.ts";
import { startWsBackend, WsClient, type WsBackend } from "./support/ws-backend.ts";

const UPGRADES = 20;
const HOST = "app.test";
let backend: Backend;
let wsBackend: WsBackend;
let proxy: Proxy;
let executable: string;
let original: string;

beforeAll(async () => {
  backend = startBackend("app");
  wsBackend = startWsBackend("ws");
  // The server runs from a copy of its executable, which the tests replace.
  original = parachuteCommand()[0]!;
  const dir = tempDir("parachute-exe-");
  executable = path.join(dir, "parachute-under-test");
  fs.copyFileSync(original, executable);
  fs.chmodSync(executable, 0o755);
  // One process: test/workers.test.ts upgrades a parachute with workers.
  proxy = await Proxy.start({ executable, args: ["--workers", "1"] });
  for (const [service, host, target] of [
    ["app", HOST, backend.address],
    ["ws", "ws.test", wsBackend.address],
  ] as const) {
    const deployed = await proxy.cli(["deploy", service, "--host", host, "--target", target, "--health-check-interval", "200ms"]);
    expect(deployed.stdout).toContain("Deployed");
  }
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await backend?.stop();
  await wsBackend?.stop();
});

/** Replaces the executable on disk the way a package manager does: a new file renamed over the old one. */
function replaceExecutable(source: string | { script: string }) {
  const next = `${executable}.new`;
  if (typeof source === "string") fs.copyFileSync(source, next);
  else fs.writeFileSync(next, source.script);
  fs.chmodSync(next, 0o755);
  fs.renameSync(next, executable);
}

interface Tally {
  ok: number;
  retried: number;
  failures: string[];
}

/**
 * A client that sends its next request the moment an answer is complete, on
 * one keep-alive connection until the server says `Connection: close` (then
 * on a new one). It never resends: a reset, or a close with a request
 * unanswered, is a failure. Resolves after `requests` answers or at `stopped()`.
 */
function backToBack(port: number, requests: number, stopped: () => boolean, check: (ok: boolean, detail: string) => void): Promise<void> {
  const request = `GET /echo HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;
  let answered = 0;
  const connection = () =>
    new Promise<void>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      let buffer = "";
      let waiting = false;
      const send = () => {
        if (stopped() || answered >= requests) return socket.end();
        waiting = true;
        buffer = "";
        socket.write(request);
      };
      socket.on("connect", send);
      socket.on("data", (data) => {
        buffer += data.toString("latin1");
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffer.slice(0, end);
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffer.length < end + 4 + length) return;
        waiting = false;
        answered++;
        check(head.startsWith("HTTP/1.1 200"), head.split("\r\n")[0]!);
        if (/connection: *close/i.test(head)) socket.end();
        else send();
      });
      socket.on("error", (error: Error & { code?: string }) => {
        if (waiting) check(false, `back-to-back keep-alive: ${error.code ?? error.message}`);
        waiting = false;
      });
      socket.on("close", () => {
        if (waiting) check(false, "back-to-back keep-alive: closed with a request unanswered");
        resolve();
      });
    });
  return (async () => {
    while (!stopped() && answered < requests) await connection();
  })();
}

/** Client loops of each kind, until `stop()`; each loop is bounded by a request cap. */
function startLoad() {
  const tally: Tally = { ok: 0, retried: 0, failures: [] };
  let stopped = false;
  const port = proxy.httpPort;
  const check = (what: string, ok: boolean, detail: string) => {
    if (ok) tally.ok++;
    else tally.failures.push(`${what}: ${detail}`);
  };
  // A keep-alive client may find that the idle connection it picked was
  // closed just then; resending such a request is allowed (RFC 9112 §9.3.1),
  // and counted.
  const keepAlive = async (what: string, send: () => Promise<Response>, verify: (res: Response, body: ArrayBuffer) => boolean) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await send();
        const body = await res.arrayBuffer();
        return check(what, verify(res, body), `HTTP ${res.status}`);
      } catch (error) {
        if (attempt === 0) {
          tally.retried++;
          continue;
        }
        return check(what, false, (error as Error).message);
      }
    }
  };
  const url = (p: string) => `http://127.0.0.1:${port}${p}`;
  const upload = new Uint8Array(256 * 1024).fill(7);
  const loops: Record<string, () => Promise<void>> = {
    small: () => keepAlive("GET /echo", () => fetch(url("/echo"), { headers: { host: HOST } }), (res) => res.status === 200),
    slow: () => keepAlive("GET /slow", () => fetch(url("/slow?ms=400"), { headers: { host: HOST } }), (res) => res.status === 200),
    upload: () =>
      keepAlive(
        "POST /echo",
        () => fetch(url("/echo"), { method: "POST", body: upload, headers: { host: HOST } }),
        (res, body) => res.status === 200 && JSON.parse(new TextDecoder().decode(body)).bodyBytes === upload.byteLength,
      ),
    download: () =>
      keepAlive(
        "GET /bytes",
        () => fetch(url("/bytes?n=1048576"), { headers: { host: HOST } }),
        (res, body) => res.status === 200 && body.byteLength === 1048576,
      ),
    // A new connection for every request: a refused or reset connect fails it, with no retry.
    fresh: async () => {
      try {
        const res = await rawRequest(port, buildRequest("GET", "/echo", [["Host", HOST], ["Connection", "close"]]));
        check("new connection", res.status === 200, `HTTP ${res.status}`);
      } catch (error) {
        check("new connection", false, (error as Error).message);
      }
    },
  };
  const running = Object.entries(loops).flatMap(([, once]) =>
    [0, 1].map(async () => {
      for (let i = 0; i < 20_000 && !stopped; i++) await once();
    }),
  );
  for (let i = 0; i < 4; i++) running.push(backToBack(port, 50_000, () => stopped, (ok, detail) => check("back-to-back", ok, detail)));
  return {
    tally,
    async stop() {
      stopped = true;
      await Promise.all(running);
      return tally;
    },
  };
}

/** The children of a process, with their state letter (Z: a zombie no one has reaped). */
function childrenOf(parent: number): { pid: number; state: string }[] {
  return fs.readdirSync("/proc").flatMap((name) => {
    if (!/^\d+$/.test(name)) return [];
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(fields[1]) === parent ? [{ pid: Number(name), state: fields[0]! }] : [];
    } catch {
      return [];
    }
  });
}

/** Runs `parachute upgrade`; once it succeeds, waits for the successor's `Server started` line (so `serverPid` is the new one). */
async function upgrade(args: string[] = [], target = proxy) {
  const mark = target.logMark();
  const result = await target.cli(["upgrade", ...args]);
  if (result.code === 0) await target.waitForLog((l) => l.msg === "Server started" && l.upgraded_from !== undefined, 10_000, mark);
  return result;
}

test(
  `${UPGRADES} upgrades in a row under load: no failed request, no reset connection`,
  async () => {
    const load = startLoad();
    await waitFor("traffic through the proxy", () => load.tally.ok > 50);
    const pids = new Set([proxy.serverPid]);
    for (let i = 0; i < UPGRADES; i++) {
      const result = await upgrade();
      expect(result.stdout).toContain("Upgraded parachute");
      expect(result.code).toBe(0);
      pids.add(proxy.serverPid);
    }
    const tally = await load.stop();
    console.log(`upgrade under load: ${tally.ok} requests ok, ${tally.retried} resent after an idle connection closed, ${tally.failures.length} failed`);
    expect(tally.failures).toEqual([]);
    expect(tally.ok).toBeGreaterThan(UPGRADES * 10);
    // Every upgrade was a new process, and the old ones are gone, except the
    // one that was started: it stays as the anchor, with no zombie children.
    expect(pids.size).toBe(UPGRADES + 1);
    const old = [...pids].filter((pid) => pid !== proxy.serverPid && pid !== proxy.pid);
    await waitFor("every old process to exit", () => old.every((pid) => !processAlive(pid)));
    expect(processAlive(proxy.pid)).toBe(true);
    await waitFor("the anchor to reap every old server", () => childrenOf(proxy.pid).every((child) => child.state !== "Z"));
    expect(childrenOf(proxy.pid).map((child) => child.pid)).toEqual([proxy.serverPid]);
    // The state came along: the services are still there and served.
    const list = await proxy.listJson();
    expect(list.map((s) => s.name).sort()).toEqual(["app", "ws"]);
  },
  180_000,
);

test("an open WebSocket is closed with 1001 once the new process serves, and a new one reaches the new process", async () => {
  const client = new WsClient(`ws://127.0.0.1:${proxy.httpPort}/chat`, { host: "ws.test" });
  await client.opened;
  const before = proxy.serverPid;
  const result = await upgrade();
  expect(result.code).toBe(0);
  expect((await client.closed).code).toBe(1001);
  expect(proxy.serverPid).not.toBe(before);
  const again = new WsClient(`ws://127.0.0.1:${proxy.httpPort}/chat`, { host: "ws.test" });
  await again.opened;
  again.close(1000);
  await again.closed;
}, 30_000);

test("an executable that fails to start: the command fails with the reason, the old process serves on, nothing changed", async () => {
  const before = proxy.serverPid;
  const stateBefore = fs.readFileSync(proxy.stateFile, "utf8");
  replaceExecutable({ script: "#!/bin/sh\necho 'this build is broken' >&2\nexit 3\n" });
  try {
    const result = await upgrade();
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("upgrade failed");
    expect(result.stderr).toContain("exited with code 3");
    expect(proxy.serverPid).toBe(before);
    expect(processAlive(before)).toBe(true);
    const res = await proxy.fetch("/echo", { host: HOST });
    expect(res.status).toBe(200);
    await res.body?.cancel();
    expect(fs.readFileSync(proxy.stateFile, "utf8")).toBe(stateBefore);
    // Commands work again once the upgrade has failed.
    const deployed = await proxy.cli(["deploy", "app", "--host", HOST, "--target", backend.address]);
    expect(deployed.code).toBe(0);
  } finally {
    replaceExecutable(original);
  }
  // The real executable back in place: the upgrade goes through.
  const result = await upgrade();
  expect(result.code).toBe(0);
  expect(proxy.serverPid).not.toBe(before);
}, 60_000);

test("a missing executable: the command fails naming it, and commands are accepted again", async () => {
  const before = proxy.serverPid;
  fs.rmSync(executable);
  try {
    const result = await upgrade();
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot start ${executable}`);
    expect(proxy.serverPid).toBe(before);
    const deployed = await proxy.cli(["deploy", "app", "--host", HOST, "--target", backend.address]);
    expect(deployed.code).toBe(0);
  } finally {
    replaceExecutable(original);
  }
}, 30_000);

test("an upgrade that is not ready in time is abandoned: the old process serves on", async () => {
  const before = proxy.serverPid;
  const result = await upgrade(["--ready-timeout", "1ms"]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("was not ready within");
  expect(proxy.serverPid).toBe(before);
  const res = await proxy.fetch("/echo", { host: HOST });
  expect(res.status).toBe(200);
  await res.body?.cancel();
}, 30_000);

test("a bad upgrade flag is refused before anything starts", async () => {
  const before = proxy.serverPid;
  const result = await upgrade(["--drain-timeout", "soon"]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('"soon"');
  expect(proxy.serverPid).toBe(before);
});

test("a second parachute on the same metrics port still fails loudly", async () => {
  const metricsPort = await freePort();
  const own = await Proxy.start({ args: ["--metrics-port", String(metricsPort)] });
  try {
    const dir = tempDir();
    const second = await runCli(
      ["run", "--http-port", "0", "--https-port", "0", "--bind", "127.0.0.1", "--metrics-port", String(metricsPort), "--state-dir", dir, "--socket", path.join(dir, "s.sock")],
      {},
      { timeoutMs: 15_000 },
    );
    expect(second.timedOut).toBeUndefined();
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`metrics port ${metricsPort} is already in use`);
  } finally {
    await own.stop();
  }
}, 30_000);

/** parachute_requests_paused for the service "app". */
async function pausedRequests(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^parachute_requests_paused\{service="app"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

/** A parachute of its own with service "app" paused and `count` requests held by it (checked with its metrics). */
async function withHeldRequests(workers: string, count: number, name: string) {
  const metricsPort = await freePort();
  const own = await Proxy.start({ args: ["--workers", workers, "--metrics-port", String(metricsPort)] });
  const app = startBackend(name);
  await mustRun(own, ["deploy", "app", "--host", HOST, "--target", app.address, "--health-check-interval", "200ms"]);
  await mustRun(own, ["pause", "app"]);
  const held = Array.from({ length: count }, () => own.fetch("/echo?held", { host: HOST, headers: { connection: "close" } }));
  await waitFor(`${count} requests held`, async () => (await pausedRequests(metricsPort)) === count);
  return {
    own,
    app,
    held,
    stop: async () => {
      await own.stop();
      await app.stop();
    },
  };
}

for (const workers of ["1", "2"]) {
  test(`requests held by a pause across an upgrade are released by a resume sent to the new server (--workers ${workers})`, async () => {
    const { own, app, held, stop } = await withHeldRequests(workers, 3, "paused");
    try {
      // The upgrade returns once the old server has drained, and it holds
      // those requests: the resume goes to the new one meanwhile.
      const mark = own.logMark();
      const upgrading = upgrade([], own);
      await own.waitForLog((l) => l.msg === "Handing over", 10_000, mark);
      await mustRun(own, ["resume", "app"]);
      const answers = await Promise.all(held);
      expect((await upgrading).code).toBe(0);
      expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
      // Released by the resume: max-pause would have answered 504, the drain timeout 503.
      expect(app.requests).toBe(3);
    } finally {
      await stop();
    }
  }, 40_000);
}

test("requests a pause still holds at --drain-timeout are answered 503, not cut, and the command says the drain was cut short", async () => {
  // Held in the old server (a pause holds requests up to max-pause, 30 s by default).
  const { own, app, held, stop } = await withHeldRequests("2", 2, "held");
  try {
    const result = await upgrade(["--drain-timeout", "1s"], own);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("cut what was still in flight after 1s");
    const answers = await Promise.all(held);
    expect(answers.map((r) => r.status)).toEqual([503, 503]);
    expect(app.requests).toBe(0);
  } finally {
    await stop();
  }
}, 40_000);

test("the process that was started stays as the anchor: SIGTERM to it stops the serving server gracefully, and it exits 0", async () => {
  const own = await Proxy.start({ args: ["--workers", "2"] });
  try {
    const app = startBackend("anchored");
    try {
      await mustRun(own, ["deploy", "app", "--host", HOST, "--target", app.address, "--health-check-interval", "200ms"]);
      for (let i = 0; i < 2; i++) expect((await upgrade([], own)).code).toBe(0);
      // The pid file names the server serving now; the first process is still there.
      expect(fs.readFileSync(path.join(own.stateDir, "parachute.pid"), "utf8").trim()).toBe(String(own.serverPid));
      expect(own.serverPid).not.toBe(own.pid);
      expect(processAlive(own.pid)).toBe(true);
      const serving = own.serverPid;
      const slow = own.fetch("/slow?ms=800", { host: HOST });
      await waitFor("the slow request to reach the app", () => app.inflight === 1);
      const mark = own.logMark();
      own.kill("SIGTERM");
      expect(await own.exited).toBe(0);
      expect((await slow).status).toBe(200);
      expect(processAlive(serving)).toBe(false);
      expect((await own.waitForLog((l) => l.msg === "Server stopped", 1000, mark)).graceful).toBe(true);
      expect(fs.existsSync(path.join(own.stateDir, "parachute.pid"))).toBe(false);
    } finally {
      await app.stop();
    }
  } finally {
    await own.stop();
  }
}, 60_000);

test("when the serving server dies after upgrades, the anchor exits with its status", async () => {
  const own = await Proxy.start({ args: ["--workers", "1"] });
  try {
    for (let i = 0; i < 2; i++) expect((await upgrade([], own)).code).toBe(0);
    process.kill(own.serverPid, "SIGKILL");
    expect(await own.exited).toBe(128 + 9);
  } finally {
    await own.stop();
  }
}, 60_000);
