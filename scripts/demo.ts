#!/usr/bin/env bun
// `make demo`: a zero-downtime redeploy you can watch.
//
// Starts parachute on a free local port (the source via bun, or the binary
// named by PARACHUTE_BIN) with a temporary state directory and admin socket,
// starts four instances of the sample app (sample/app.ts) on free ports,
// deploys the first, then runs a small load loop (a few concurrent clients)
// while redeploying to two others and then to the fourth. It prints what
// happened: requests served, failures (any non-200 or connection error, and
// any request that reached an old instance after its deploy had returned),
// which instances served, and the URLs and commands to try. Then it keeps
// everything running until Ctrl-C.
//
//   bun scripts/demo.ts            run, report, keep running until Ctrl-C
//   bun scripts/demo.ts --exit     run, report, stop (also DEMO_EXIT=1; for CI)
//   DEMO_PORT=8080 bun scripts/demo.ts   a fixed proxy port instead of a free one
//
// Exit status: 0 when every request succeeded, 1 otherwise. Every child
// process is stopped and the temporary directory removed on exit.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Subprocess } from "bun";

const ROOT = path.resolve(import.meta.dir, "..");
const CLIENTS = 4; // concurrent load clients (each sends one request at a time)
const STEADY_MS = 1000; // load time between deploys, so each phase shows up in the counts
const REQUEST_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 15_000;

const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  console.log("usage: bun scripts/demo.ts [--exit]   (env: DEMO_EXIT=1, DEMO_PORT=N, PARACHUTE_BIN=dist/parachute)");
  process.exit(0);
}
for (const arg of args) {
  if (arg !== "--exit") {
    console.error(`Error: unknown argument ${arg} (usage: bun scripts/demo.ts [--exit])`);
    process.exit(2);
  }
}
const exitWhenDone = args.includes("--exit") || ["1", "true", "yes"].includes(process.env.DEMO_EXIT ?? "");
const proxyPort = process.env.DEMO_PORT ?? "0";
if (!/^\d+$/.test(proxyPort) || Number(proxyPort) > 65535) {
  console.error(`Error: invalid DEMO_PORT "${proxyPort}"`);
  process.exit(2);
}

// ---------------------------------------------------------------- processes

/** The command that runs parachute, and how to show it to a person. */
const bin = process.env.PARACHUTE_BIN;
const parachute = bin ? [path.resolve(ROOT, bin)] : [process.execPath, path.join(ROOT, "src/main.ts")];
/** A path as short as it can be shown: relative to the working directory when it is below it. */
const shown = (file: string) => {
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith("..") ? relative : file;
};
const parachuteShown = bin ? shown(path.resolve(ROOT, bin)) : `bun ${shown(path.join(ROOT, "src/main.ts"))}`;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-demo-"));
const stateDir = path.join(dir, "state");
const socket = path.join(dir, "parachute.sock");
const childEnv: Record<string, string | undefined> = { ...process.env, NO_COLOR: "1" };
delete childEnv.PARACHUTE_SOCKET;

interface Child {
  name: string;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  output: string[];
  /** Resolves with the first JSON line on stdout for which `match` returns true. */
  waitForLine(match: (line: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
}

const children: Child[] = [];

function spawn(name: string, cmd: string[], env: Record<string, string | undefined> = {}): Child {
  const proc = Bun.spawn(cmd, { cwd: ROOT, env: { ...childEnv, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const output: string[] = [];
  const lines: Record<string, unknown>[] = [];
  let waiters: { match: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>, parse: boolean) => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        output.push(line);
        if (output.length > 200) output.shift();
        if (!parse) continue;
        let json: Record<string, unknown>;
        try {
          json = JSON.parse(line);
        } catch {
          continue;
        }
        if (lines.length < 50) lines.push(json);
        waiters = waiters.filter((w) => (w.match(json) ? (w.resolve(json), false) : true));
      }
    }
  };
  void pump(proc.stdout, true);
  void pump(proc.stderr, false);
  const child: Child = {
    name,
    proc,
    output,
    waitForLine(match, timeoutMs) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name} did not start within ${timeoutMs} ms\n${output.join("\n")}`)), timeoutMs);
        waiters.push({ match, resolve: (line) => (clearTimeout(timer), resolve(line)) });
        void proc.exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`${name} exited with status ${code} before starting:\n${output.join("\n")}`));
        });
      });
    },
  };
  children.push(child);
  return child;
}

let cleaningUp: Promise<void> | undefined;
/** Stops every child (SIGTERM, then SIGKILL after 5 s) and removes the temporary directory. */
function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    await Promise.all(
      children.map(async ({ proc }) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
        await proc.exited;
        clearTimeout(timer);
      }),
    );
    fs.rmSync(dir, { recursive: true, force: true });
  })();
  return cleaningUp;
}

async function finish(code: number): Promise<never> {
  await cleanup();
  process.exit(code);
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    console.log(`\n${signal}: stopping the proxy and the sample instances…`);
    void finish(0);
  });
}

/** Runs a parachute client command; shows its progress lines (stderr) indented. */
async function cli(cmdArgs: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn([...parachute, ...cmdArgs, "--socket", socket], { cwd: ROOT, env: childEnv, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** The proxy's last output lines, without the request log lines of successful requests. */
const proxyTail = (proxy: Child, count: number) =>
  proxy.output
    .filter((line) => !(line.includes('"msg":"Request"') && line.includes('"status":200')))
    .slice(-count)
    .join("\n") || "(nothing)";

const indent = (text: string, prefix = "    ") =>
  text
    .trimEnd()
    .split("\n")
    .filter((l) => l)
    .map((l) => prefix + l)
    .join("\n");

// --------------------------------------------------------------------- load

interface Phase {
  label: string;
  /** Instances allowed to answer a request that started in this phase. */
  allowed: Set<string>;
  served: Map<string, number>;
}

const phases: Phase[] = [];
let phase: Phase | undefined;
let requests = 0;
let failures = 0;
let misrouted = 0;
const failureSamples: string[] = [];
const servedBy = new Map<string, number>();
let loadRunning = false;

function enterPhase(label: string, allowed: string[]) {
  phase = { label, allowed: new Set(allowed), served: new Map() };
  phases.push(phase);
}

function noteFailure(text: string) {
  failures++;
  if (failureSamples.length < 5) failureSamples.push(text);
}

async function loadClient(url: string) {
  while (loadRunning) {
    const current = phase!;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const body = await res.text();
      requests++;
      if (res.status !== 200) {
        noteFailure(`HTTP ${res.status} during "${current.label}": ${body.slice(0, 120).replace(/\s+/g, " ")}`);
        continue;
      }
      const instance = String((JSON.parse(body) as { instance?: unknown }).instance);
      servedBy.set(instance, (servedBy.get(instance) ?? 0) + 1);
      current.served.set(instance, (current.served.get(instance) ?? 0) + 1);
      if (!current.allowed.has(instance)) {
        misrouted++;
        if (failureSamples.length < 5) failureSamples.push(`${instance} answered a request sent during "${current.label}"`);
      }
    } catch (error) {
      requests++;
      noteFailure(`request failed during "${current.label}": ${(error as Error).message}`);
    }
  }
}

// --------------------------------------------------------------------- main

async function main() {
  console.log("parachute demo: one proxy, four instances of sample/app.ts, zero-downtime redeploys under load\n");

  const proxy = spawn("parachute", [...parachute, "run", "--http-port", proxyPort, "--https-port", "0", "--bind", "127.0.0.1", "--state-dir", stateDir, "--socket", socket]);
  const instanceNames = ["web-1", "web-2", "web-3", "web-4"];
  const instances = instanceNames.map((name) => spawn(name, [process.execPath, path.join(ROOT, "sample/app.ts")], { PORT: "0", BIND: "127.0.0.1", INSTANCE: name }));

  const started = await proxy.waitForLine((l) => l.msg === "Server started", START_TIMEOUT_MS);
  const port = Number(started.http_port);
  const targets: string[] = [];
  for (const instance of instances) {
    const line = await instance.waitForLine((l) => l.msg === "listening", START_TIMEOUT_MS);
    targets.push(`127.0.0.1:${line.port}`);
  }
  const base = `http://127.0.0.1:${port}`;
  const [t1, t2, t3, t4] = targets as [string, string, string, string];

  console.log(`proxy      ${base}   (${parachuteShown} run; state and socket in ${dir})`);
  instanceNames.forEach((name, i) => console.log(`${name.padEnd(10)} http://${targets[i]}`));
  console.log();

  async function deploy(deployTargets: string[], allowedDuring: string[], after: string[], label: string) {
    console.log(`$ parachute deploy web --target ${deployTargets.join(",")}`);
    enterPhase(`deploying to ${label}`, allowedDuring);
    const t0 = performance.now();
    const result = await cli(["deploy", "web", "--target", deployTargets.join(",")]);
    if (result.stderr.trim()) console.log(indent(result.stderr));
    if (result.code !== 0) throw new Error(`deploy failed (exit ${result.code})`);
    console.log(`    (${Math.round(performance.now() - t0)} ms)`);
    enterPhase(`${label} serving`, after);
  }

  // 1. The first deploy, before any load.
  enterPhase("before the first deploy", []);
  await deploy([t1], [], ["web-1"], "web-1");

  // 2. Load, and two redeploys while it runs.
  console.log(`\nload: ${CLIENTS} concurrent clients sending GET ${base}/whoami in a loop\n`);
  loadRunning = true;
  const clients = Array.from({ length: CLIENTS }, () => loadClient(`${base}/whoami`));
  await Bun.sleep(STEADY_MS);
  await deploy([t2, t3], ["web-1", "web-2", "web-3"], ["web-2", "web-3"], "web-2 + web-3");
  await Bun.sleep(STEADY_MS);
  await deploy([t4], ["web-2", "web-3", "web-4"], ["web-4"], "web-4");
  await Bun.sleep(STEADY_MS);
  loadRunning = false;
  await Promise.all(clients);

  // 3. The report.
  const list = await cli(["list"]);
  console.log(`\n$ parachute list\n${indent(list.stdout || list.stderr)}`);

  const counts = (m: Map<string, number>) =>
    [...m.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, n]) => `${name} ${n}`)
      .join(", ") || "none";
  console.log("\nWhat happened");
  console.log(`  requests served: ${requests - failures}`);
  console.log(`  failures: ${failures}`);
  console.log(`  old instance after its deploy returned: ${misrouted}`);
  console.log(`  served by: ${counts(servedBy)}`);
  for (const p of phases) if (p.served.size > 0) console.log(`    ${p.label.padEnd(26)} ${counts(p.served)}`);
  for (const sample of failureSamples) console.log(`  ! ${sample}`);

  const ok = failures === 0 && misrouted === 0;
  if (!ok) {
    console.log("\nFAILED: some requests were dropped or misrouted. Proxy output (last lines, successful requests left out):");
    console.log(indent(proxyTail(proxy, 10)));
    await finish(1);
  }

  console.log(`
Try it
  ${base}/           the sample page: which instance served you (reload)
  ${base}/whoami     the same as JSON
  ${parachuteShown} list --socket ${socket}
  ${parachuteShown} deploy web --target ${t1},${t2} --socket ${socket}
  (the four instances stay up on ${targets.join(", ")})`);

  if (exitWhenDone) {
    console.log("\nStopping now (--exit / DEMO_EXIT=1).");
    await finish(0);
  }
  console.log("\nRunning until Ctrl-C.");
  // If the proxy dies while we wait, say so and stop the rest.
  const code = await proxy.proc.exited;
  if (!cleaningUp) {
    console.log(`\nThe proxy exited (status ${code}):\n${indent(proxyTail(proxy, 20))}`);
    await finish(1);
  }
}

main().catch(async (error) => {
  loadRunning = false;
  console.error(`\nError: ${(error as Error).message}`);
  await finish(1);
});
