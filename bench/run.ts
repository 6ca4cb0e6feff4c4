// Load benchmark: parachute side by side with a minimal Bun.serve + fetch
// forwarder (bun-min, the headline baseline), a minimal node:http + fetch
// forwarder (node-min) and nginx, all in front of the same fast backend
// (nginx when installed), over HTTP and HTTPS, in one run. Run with
// `bun run bench`; bench/README.md documents the scenarios and settings
// (bench/settings.ts reads them).
//
// Two phases, each a number of rounds in which the targets rotate order:
// 1. HTTP (small, big): then the RSS after load; the "settled" RSS is read
//    BENCH_SETTLE seconds later, while phase 2 loads other processes only;
// 2. HTTPS (https, handshake, h2): separate server processes (a second
//    parachute, a TLS bun-min, a TLS nginx), so phase 1's RSS stays comparable.
//
// Every process is a child of this one and listens on 127.0.0.1 only; all are
// stopped on exit, on error and on SIGINT/SIGTERM.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BIG_BODY_BYTES, BIG_PATH, SMALL_BODY, SMALL_PATH } from "./bodies.ts";
import { chooseLoadGenerator, h2loadCommand, handshakeCommand, parseH2load, parseJsonLine, type Command, type LoadGenerator, type LoadResult } from "./loadgen.ts";
import { memoryOf, type Memory } from "./memory.ts";
import { findNginx, nginxVersion, startNginxBackend, startNginxProxy } from "./nginx.ts";
import { cpuSeconds, freePort, hostBusyPct, hostBusySeconds, hostCpuTimes, onInterrupt, processTree, runToEnd, stopAll, waitForFile, type Child } from "./procs.ts";
import { afterLoad, fmtMs, memoryTable, scenarioTable, SCENARIO_TITLES, type MemoryRecord } from "./report.ts";
import { deploy, logTail, startBunServer, startParachute, type Started } from "./servers.ts";
import { readSettings, ROOT, type ScenarioId, type Settings, type TargetName } from "./settings.ts";
import { addRatios, headline, summarize, type Measurement, type Summary } from "./stats.ts";
import { makeCertificate, probeTls, TLS_HOST, type Certificate } from "./tls.ts";

type LoadScenario = Exclude<ScenarioId, "rss">;
type Phase = "http" | "tls";
const PHASE_SCENARIOS: Record<Phase, LoadScenario[]> = { http: ["small", "big"], tls: ["https", "handshake", "h2"] };

/** One target of one phase: where the load goes and which process is the proxy. */
interface Endpoint {
  target: TargetName;
  phase: Phase;
  port: number;
  /** The proxy's root process (its whole tree is measured); none for direct. */
  proxy?: Child;
  /** Output file to watch: parachute's request log grows with every request. */
  logFile?: string;
  /** BENCH_PROFILE: SIGUSR2 starts and stops profile-entry.ts's profiler, which then writes `report`. */
  profile?: { report: string; done: boolean };
}

interface Tools {
  gen: LoadGenerator;
  h2load: string | undefined;
  dir: string;
}

// ---------------------------------------------------------------- the loads

/** The load's command line; `port` is "PORT" for the report's example commands. */
function loadCommand(s: Settings, t: Tools, scenario: LoadScenario, port: number | "PORT", seconds: number, logFile: string): Command {
  const http = (p: string) => `http://127.0.0.1:${port}${p}`;
  // wrk connects to 127.0.0.1 and sends SNI and Host bench.test (bench/wrk-connect-to.lua).
  const https = `https://${TLS_HOST}:${port}${SMALL_PATH}`;
  switch (scenario) {
    case "small":
      return t.gen.command({ url: http(SMALL_PATH), connections: s.connections, threads: s.threads, seconds });
    case "big":
      return t.gen.command({ url: http(BIG_PATH), connections: s.bigConnections, threads: s.threads, seconds });
    case "https":
      return t.gen.command({ url: https, connections: s.connections, threads: s.threads, seconds, connectTo: "127.0.0.1" });
    case "handshake":
      return handshakeCommand({ port, serverName: TLS_HOST, path: SMALL_PATH, connections: s.handshakeConnections, seconds });
    case "h2":
      return h2loadCommand(t.h2load!, { url: https, connectTo: "127.0.0.1", clients: s.h2Clients, streams: s.h2Streams, seconds, logFile });
  }
}

/** One bounded load run; its process is killed 30 s after it should have ended. */
async function loadRun(s: Settings, t: Tools, scenario: LoadScenario, e: Endpoint, seconds: number): Promise<{ result: LoadResult; cpuSeconds: number | undefined }> {
  const logFile = path.join(t.dir, `h2load-${e.target}.log`);
  const { cmd, env } = loadCommand(s, t, scenario, e.port, seconds, logFile);
  const run = await runToEnd(`${scenario} load`, cmd, (seconds + 30) * 1000, env);
  if (run.code !== 0) throw new Error(`${cmd.join(" ")} exited with ${run.code}:\n${run.stderr}${run.stdout}`);
  let result: LoadResult;
  if (scenario === "h2") {
    result = parseH2load(run.stdout, fs.readFileSync(logFile, "utf8"));
    fs.rmSync(logFile, { force: true });
  } else result = scenario === "handshake" ? parseJsonLine(run.stdout) : t.gen.parse(run.stdout);
  return { result, cpuSeconds: run.cpuSeconds };
}

// ---------------------------------------------------------------- measuring

function fileSize(file: string | undefined): number | undefined {
  if (!file) return undefined;
  try {
    return fs.statSync(file).size;
  } catch {
    return undefined;
  }
}

/** CPU counters read together at the start and at the end of a measured run. */
interface Sample {
  at: number;
  host: ReturnType<typeof hostCpuTimes>;
  proxy: number | undefined;
  backend: number | undefined;
  /** This orchestrating process. */
  self: number;
}

function sample(e: Endpoint, backendPids: number[]): Sample {
  return {
    at: performance.now(),
    host: hostCpuTimes(),
    proxy: e.proxy ? cpuSeconds(processTree(e.proxy.pid)) : undefined,
    backend: cpuSeconds(backendPids),
    self: process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
  };
}

/** The CPU shares of one run, in % of one core over the run's wall-clock window. */
function cpuShares(m: Measurement, before: Sample, after: Sample, loadgenCpu: number | undefined) {
  const window = (after.at - before.at) / 1000;
  const delta = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : b - a);
  const proxy = delta(before.proxy, after.proxy);
  const backend = delta(before.backend, after.backend);
  if (proxy !== undefined) {
    m.proxy_cpu_pct = (proxy / window) * 100;
    if (m.requests > 0) m.proxy_cpu_us_per_request = (proxy / m.requests) * 1e6;
  }
  if (backend !== undefined) m.backend_cpu_pct = (backend / window) * 100;
  if (loadgenCpu !== undefined) m.loadgen_cpu_pct = (loadgenCpu / window) * 100;
  const hostBusy = hostBusyPct(before.host, after.host);
  if (hostBusy !== undefined) m.host_busy_pct = hostBusy;
  // Whatever the machine did besides the load generator, the proxy, the
  // backend and this process: other work on a shared machine shows here.
  const busy = hostBusySeconds(before.host, after.host);
  if (busy !== undefined) {
    const ours = (proxy ?? 0) + (backend ?? 0) + (loadgenCpu ?? 0) + (after.self - before.self);
    m.others_cpu_pct = Math.max(0, ((busy - ours) / window) * 100);
  }
}

/** Below this share of all cores busy, the machine counts as idle (the benchmark's idle servers use about 1%). */
const QUIET_BUSY_PCT = 10;

/**
 * BENCH_QUIET: waits, one-second samples at a time, until the machine is idle
 * or `maxSeconds` have passed; returns the seconds waited. On a shared machine
 * other people's test suites come and go, and a run measured during one says
 * little.
 */
async function waitForQuiet(maxSeconds: number): Promise<number> {
  const started = performance.now();
  while ((performance.now() - started) / 1000 < maxSeconds) {
    const before = hostCpuTimes();
    await Bun.sleep(1000);
    const busy = hostBusyPct(before, hostCpuTimes());
    if (busy === undefined || busy < QUIET_BUSY_PCT) break;
  }
  return (performance.now() - started) / 1000;
}

/** One measured run (after its warmup), and the proxy's memory right after it. */
async function measure(s: Settings, t: Tools, scenario: LoadScenario, e: Endpoint, round: number, backendPids: number[]): Promise<{ m: Measurement; rss: Memory | undefined }> {
  const waited = s.quiet > 0 ? await waitForQuiet(s.quiet) : 0;
  if (s.warmup > 0) await loadRun(s, t, scenario, e, s.warmup);
  await Bun.sleep(200);
  const logBefore = fileSize(e.logFile);
  const profile = e.profile && !e.profile.done ? e.profile : undefined;
  if (profile) {
    e.proxy!.proc.kill("SIGUSR2");
    await Bun.sleep(100);
  }
  const before = sample(e, backendPids);
  const { result, cpuSeconds: loadgenCpu } = await loadRun(s, t, scenario, e, s.duration);
  const after = sample(e, backendPids);
  const rss = e.proxy ? memoryOf(e.proxy.pid) : undefined;
  const logAfter = fileSize(e.logFile);
  if (profile) {
    profile.done = true;
    e.proxy!.proc.kill("SIGUSR2");
    await waitForFile(profile.report, e.proxy!, 30_000, (text) => (text ? true : undefined));
  }
  const m: Measurement = { ...result, round };
  if (s.quiet > 0) m.quiet_wait_s = waited;
  cpuShares(m, before, after, loadgenCpu);
  if (rss) m.rss_after_kb = rss.rss_kb;
  // wrk's count misses requests still in flight at the end, so this is approximate.
  if (logBefore !== undefined && logAfter !== undefined && result.requests > 0) m.log_bytes_per_request = (logAfter - logBefore) / result.requests;
  return { m, rss };
}

/** Results by scenario, then by target. */
type Runs = Map<LoadScenario, Map<TargetName, Measurement[]>>;

function describe(m: Measurement, scenario: LoadScenario): string {
  const value = headline(scenario, m);
  const main = scenario === "big" ? `${Math.round(value).toString().padStart(6)} MiB/s` : `${Math.round(value).toString().padStart(7)} ${scenario === "handshake" ? "conn/s" : "req/s"}`;
  const errors = m.errors || m.non2xx ? `  errors ${m.errors} non-2xx ${m.non2xx}` : "";
  const others = (m.others_cpu_pct ?? 0) >= 10 ? `  (others used ${Math.round(m.others_cpu_pct!)}% of a core)` : "";
  const waited = (m.quiet_wait_s ?? 0) >= 2 ? `  (waited ${Math.round(m.quiet_wait_s!)}s for an idle machine)` : "";
  return `${main}  p50 ${fmtMs(m.p50_ms)}  p99 ${fmtMs(m.p99_ms)}${errors}${others}${waited}`;
}

/** Every round: every scenario of the phase, the targets in an order that rotates so no target always runs first (cold) or last (hot). */
async function runPhase(
  s: Settings,
  t: Tools,
  phase: Phase,
  endpoints: Endpoint[],
  runs: Runs,
  memory: Map<string, MemoryRecord>,
  checkServers: () => void,
  backendPids: number[],
) {
  const scenarios = PHASE_SCENARIOS[phase].filter((id) => s.scenarios.has(id));
  const list = endpoints.filter((e) => e.phase === phase);
  for (let round = 0; round < s.rounds; round++) {
    for (const scenario of scenarios) {
      const order = list.map((_, i) => list[(i + round) % list.length]!);
      for (const e of order) {
        process.stdout.write(`round ${round + 1}/${s.rounds} ${scenario.padEnd(9)} ${e.target.padEnd(9)} `);
        const { m, rss } = await measure(s, t, scenario, e, round + 1, backendPids);
        checkServers();
        if (m.requests === 0) throw new Error(`no request to ${e.target} in the ${scenario} scenario succeeded (${m.errors} errors)`);
        const byTarget = runs.get(scenario) ?? new Map<TargetName, Measurement[]>();
        runs.set(scenario, byTarget);
        byTarget.set(e.target, [...(byTarget.get(e.target) ?? []), m]);
        if (rss) memory.get(memoryKey(e))?.after.push(rss);
        console.log(describe(m, scenario));
        await Bun.sleep(300);
      }
    }
  }
}

const memoryKey = (e: Endpoint) => `${e.phase}:${e.target}`;

// ---------------------------------------------------------------- checks

/** One request must come back 200 with the backend's body before anything is measured. */
async function checkHttp(e: Endpoint, big: boolean) {
  const url = `http://127.0.0.1:${e.port}${SMALL_PATH}`;
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = await res.text();
  if (res.status !== 200 || body !== SMALL_BODY) throw new Error(`${e.target} (${url}) answered ${res.status} ${JSON.stringify(body.slice(0, 200))} instead of the backend's ${JSON.stringify(SMALL_BODY)}`);
  if (!big) return;
  const bigRes = await fetch(`http://127.0.0.1:${e.port}${BIG_PATH}`, { signal: AbortSignal.timeout(10_000) });
  const bytes = (await bigRes.arrayBuffer()).byteLength;
  if (bigRes.status !== 200 || bytes !== BIG_BODY_BYTES) throw new Error(`${e.target} answered ${BIG_PATH} with ${bigRes.status} and ${bytes} bytes instead of 200 and ${BIG_BODY_BYTES}`);
}

/** An HTTPS endpoint answers over HTTP/1.1 with SNI bench.test; returns how it handled "Connection: close". */
async function checkTls(e: Endpoint): Promise<{ closes: boolean; says_close: boolean }> {
  const probe = await probeTls(e.port, TLS_HOST, SMALL_PATH);
  const body = probe.response.body.toString();
  if (probe.response.status !== 200 || body !== SMALL_BODY) {
    throw new Error(`${e.target} over HTTPS (SNI ${TLS_HOST}) answered ${probe.response.status} ${JSON.stringify(body.slice(0, 200))} instead of the backend's ${JSON.stringify(SMALL_BODY)}`);
  }
  return { closes: probe.closed, says_close: probe.saidClose };
}

/** h2load must negotiate h2 with the endpoint and get 200s. */
async function checkH2(t: Tools, e: Endpoint) {
  const log = path.join(t.dir, "h2check.log");
  const url = `https://${TLS_HOST}:${e.port}${SMALL_PATH}`;
  const result = await runToEnd("h2load", [t.h2load!, "-n20", "-c1", "-m1", `--connect-to=127.0.0.1:${e.port}`, `--log-file=${log}`, url], 20_000);
  const parsed = parseH2load(result.stdout, fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "");
  if (!parsed.tls?.includes("h2") || parsed.requests !== 20 || parsed.non2xx) {
    throw new Error(`${e.target} did not answer HTTP/2 (h2load: ${parsed.tls ?? "no TLS/ALPN line"}, ${parsed.requests}/20 succeeded, ${parsed.non2xx} non-2xx):\n${result.stdout.slice(-1500)}`);
  }
}

// ---------------------------------------------------------------- report details

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

const commandLine = (c: Command) => [...Object.entries(c.env).map(([k, v]) => `${k}=${shellQuote(v)}`), ...c.cmd.map(shellQuote)].join(" ");

function invocation(): string {
  const env = Object.keys(process.env)
    .filter((k) => k.startsWith("BENCH_") || k === "PARACHUTE_BIN")
    .sort()
    .map((k) => `${k}=${shellQuote(process.env[k]!)}`);
  return [...env, "bun", "run", "bench"].join(" ");
}

function gitRevision(): string | undefined {
  try {
    const rev = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: ROOT, stdout: "pipe", stderr: "ignore", timeout: 5000 });
    const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--", "src"], { cwd: ROOT, stdout: "pipe", stderr: "ignore", timeout: 5000 });
    const hash = rev.stdout.toString().trim();
    if (!hash) return undefined;
    return dirty.stdout.toString().trim() ? `${hash} (src/ has uncommitted changes)` : hash;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- main

/** Drops what cannot run here (with a note), so a missing tool never fails the whole run. */
function applyPrerequisites(s: Settings, gen: LoadGenerator, nginxBin: string | undefined, h2load: string | undefined) {
  const skip = (id: ScenarioId | TargetName, why: string, set: Set<string>) => {
    if (set.delete(id)) console.log(`skipping ${id}: ${why}`);
  };
  if (!nginxBin) skip("nginx", "nginx is not installed (or BENCH_NGINX=0)", s.targets);
  if (gen.tool !== "wrk") skip("https", "needs wrk (it sends SNI bench.test through bench/wrk-connect-to.lua)", s.scenarios);
  if (!h2load) skip("h2", "h2load is not installed (Debian: nghttp2-client)", s.scenarios);
  if (!Bun.which("openssl")) for (const id of ["https", "handshake", "h2"] as const) skip(id, "openssl is not installed", s.scenarios);
  if (s.scenarios.has("rss") && !s.scenarios.has("small") && !s.scenarios.has("big")) console.log("note: rss without small or big measures processes that got no load");
}

/** How many measured runs one round makes: HTTP scenarios × all targets, HTTPS ones × the three that speak TLS. */
function plannedRunsPerRound(s: Settings): number {
  const count = <T>(items: readonly T[], has: (x: T) => boolean) => items.filter(has).length;
  const tlsTargets = count(["parachute", "bun-min", "nginx"] as const, (t) => s.targets.has(t));
  return count(PHASE_SCENARIOS.http, (id) => s.scenarios.has(id)) * s.targets.size + count(PHASE_SCENARIOS.tls, (id) => s.scenarios.has(id)) * tlsTargets;
}

async function main() {
  const s = readSettings();
  const gen = await chooseLoadGenerator(process.env.BENCH_LOADGEN);
  const nginxBin = findNginx(process.env.BENCH_NGINX);
  const h2load = Bun.which("h2load") ?? undefined;
  applyPrerequisites(s, gen, nginxBin, h2load);
  const backendKind = s.backend ?? (nginxBin ? "nginx" : "bun");
  if (backendKind === "nginx" && !nginxBin) throw new Error("BENCH_BACKEND=nginx, but nginx is not installed (or BENCH_NGINX=0)");
  const httpPhase = s.scenarios.has("small") || s.scenarios.has("big") || s.scenarios.has("rss");
  const tlsPhase = s.scenarios.has("https") || s.scenarios.has("handshake") || s.scenarios.has("h2");
  const profileDir = path.join(import.meta.dir, "results", "profile");
  const profileOut = path.join(profileDir, `parachute-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  if (s.profile) {
    if (s.parachuteBin) {
      console.error("BENCH_PROFILE is ignored with PARACHUTE_BIN (the profiler wraps src/main.ts)");
      s.profile = false;
    } else fs.mkdirSync(profileDir, { recursive: true });
  }

  const cpus = os.cpus();
  const versions: Record<string, string> = {
    bun: Bun.version,
    parachute: s.parachuteBin ? `binary ${s.parachuteBin}` : `source (bun ${Bun.version})`,
    [gen.tool]: gen.version,
  };
  if (nginxBin) versions.nginx = nginxVersion(nginxBin);
  if (h2load && s.scenarios.has("h2")) versions.h2load = (Bun.spawnSync([h2load, "--version"], { stdout: "pipe", timeout: 5000 }).stdout.toString().trim().split(" ").at(-1) ?? "");
  const estimate = s.rounds * plannedRunsPerRound(s) * (s.duration + s.warmup + 1) + 15;
  console.log(`parachute load benchmark: ${[...s.scenarios].join(", ")}; ${[...s.targets].join(", ")}; ${s.duration}s per run (+${s.warmup}s warmup), ${s.rounds} round(s), settle ${s.settle}s, about ${Math.round(estimate / 60)} min`);
  const idleBefore = hostCpuTimes();
  await Bun.sleep(1000);
  const backgroundPct = hostBusyPct(idleBefore, hostCpuTimes());
  console.log(`host: ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ${os.type()} ${os.release()}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}${backgroundPct === undefined ? "" : `, ${Math.round(backgroundPct)}% busy before the benchmark`}`);
  if (backgroundPct !== undefined && backgroundPct > 10) {
    console.log(`warning: something else is using ${Math.round(backgroundPct)}% of the CPUs; numbers will be noisy (use BENCH_ROUNDS=3 or more for medians)`);
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-bench-"));
  tempDir = s.keep ? undefined : dir;
  const tools: Tools = { gen, h2load, dir };
  /** Every server's command line, for the report. */
  const commands: Record<string, string> = {};
  const record = (name: string, cmd: string[], env: Record<string, string> = {}) => (commands[name] = commandLine({ cmd, env }));
  try {
    // ---- the backend
    let backendChild: Child;
    let backendPort: number;
    if (backendKind === "nginx") {
      const b = await startNginxBackend(nginxBin!, { dir, port: freePort(), connections: 256 });
      [backendChild, backendPort] = [b.child, b.port];
      record("backend", b.command);
    } else {
      const b = await startBunServer("bun backend", "backend.ts", dir);
      [backendChild, backendPort] = [b.child, b.port];
      record("backend", b.command);
    }
    const upstream = `http://127.0.0.1:${backendPort}`;
    const target = ["--target", `127.0.0.1:${backendPort}`];
    const endpoints: Endpoint[] = [];
    const logs = new Map<Child, string>();
    const track = (e: Endpoint, started: Started | { child: Child; logFile?: string }) => {
      endpoints.push(e);
      if (started.logFile) logs.set(started.child, started.logFile);
    };

    // ---- phase 1 servers: plain HTTP
    if (httpPhase) {
      if (s.targets.has("direct")) endpoints.push({ target: "direct", phase: "http", port: backendPort });
      if (s.targets.has("parachute")) {
        const p = await startParachute(s, { name: "parachute", dir, httpsPort: 0, ...(s.profile ? { profileOut } : {}) });
        record("parachute", p.command);
        record("deploy", await deploy(s, p.socket, "bench", target));
        track({ target: "parachute", phase: "http", port: p.port, proxy: p.child, logFile: p.logFile, ...(s.profile ? { profile: { report: `${profileOut}.md`, done: false } } : {}) }, p);
      }
      if (s.targets.has("parachute-workers")) {
        const p = await startParachute(s, { name: "parachute-workers", dir, httpsPort: 0, workers: s.workers });
        record("parachute_workers", p.command);
        await deploy(s, p.socket, "bench", target);
        track({ target: "parachute-workers", phase: "http", port: p.port, proxy: p.child, logFile: p.logFile }, p);
      }
      if (s.targets.has("bun-min")) {
        const f = await startBunServer("bun-min", "forwarder.ts", dir, { BENCH_UPSTREAM: upstream });
        record("bun_min", f.command, f.env);
        track({ target: "bun-min", phase: "http", port: f.port, proxy: f.child }, f);
      }
      if (s.targets.has("node-min")) {
        const f = await startBunServer("node-min", "node-forwarder.ts", dir, { BENCH_UPSTREAM: upstream });
        record("node_min", f.command, f.env);
        track({ target: "node-min", phase: "http", port: f.port, proxy: f.child }, f);
      }
      if (s.targets.has("nginx")) {
        const n = await startNginxProxy(nginxBin!, { dir, port: freePort(), upstreamPort: backendPort, connections: Math.max(s.connections, s.bigConnections) });
        record("nginx", n.command);
        track({ target: "nginx", phase: "http", port: n.port, proxy: n.child }, n);
      }
    }

    // ---- phase 2 servers: HTTPS, with a certificate for bench.test
    let certificate: Certificate | undefined;
    const closeBehaviour: Record<string, { closes: boolean; says_close: boolean }> = {};
    if (tlsPhase) {
      certificate = await makeCertificate(dir, s.tlsKey);
      record("certificate", certificate.command);
      if (s.targets.has("parachute")) {
        const p = await startParachute(s, { name: "parachute-tls", dir, httpsPort: freePort() });
        record("parachute_tls", p.command);
        record("deploy_tls", await deploy(s, p.socket, "bench-tls", [...target, "--host", TLS_HOST, "--tls-certificate-path", certificate.cert, "--tls-private-key-path", certificate.key]));
        track({ target: "parachute", phase: "tls", port: p.httpsPort, proxy: p.child, logFile: p.logFile }, p);
      }
      if (s.targets.has("bun-min")) {
        const f = await startBunServer("bun-min-tls", "forwarder.ts", dir, { BENCH_UPSTREAM: upstream, BENCH_TLS_CERT: certificate.cert, BENCH_TLS_KEY: certificate.key });
        record("bun_min_tls", f.command, f.env);
        track({ target: "bun-min", phase: "tls", port: f.port, proxy: f.child }, f);
      }
      if (s.targets.has("nginx")) {
        const tls = { cert: certificate.cert, key: certificate.key, serverName: TLS_HOST };
        const n = await startNginxProxy(nginxBin!, { dir, port: freePort(), upstreamPort: backendPort, connections: Math.max(s.connections, s.handshakeConnections, s.h2Clients), tls });
        record("nginx_tls", n.command);
        track({ target: "nginx", phase: "tls", port: n.port, proxy: n.child }, n);
      }
    }
    if (endpoints.length === 0) throw new Error("nothing to measure: check BENCH_SCENARIOS and BENCH_TARGETS");

    // ---- every endpoint answers correctly before anything is measured
    for (const e of endpoints) {
      if (e.phase === "http") await checkHttp(e, s.scenarios.has("big"));
      else {
        closeBehaviour[e.target] = await checkTls(e);
        if (s.scenarios.has("h2")) await checkH2(tools, e);
      }
    }
    const servers = [backendChild, ...endpoints.flatMap((e) => (e.proxy ? [e.proxy] : []))];
    const checkServers = () => {
      for (const child of servers) {
        if (child.alive()) continue;
        const how = child.proc.signalCode ? `signal ${child.proc.signalCode}` : `exit code ${child.proc.exitCode}`;
        throw new Error(`${child.name} (pid ${child.pid}) died during the benchmark (${how}); last output:\n${logTail(logs.get(child) ?? "")}`);
      }
    };

    // RSS at start: after deploy and the one check request, before any load.
    const memory = new Map<string, MemoryRecord>();
    for (const e of endpoints) if (e.proxy) memory.set(memoryKey(e), { start: memoryOf(e.proxy.pid), after: [] });

    const runs: Runs = new Map();
    const backendPids = processTree(backendChild.pid);
    await runPhase(s, tools, "http", endpoints, runs, memory, checkServers, backendPids);
    // The settle clock starts when phase 1's load stops; phase 2 does not touch phase 1's processes.
    const settled = s.settle > 0 && httpPhase && s.scenarios.has("rss")
      ? Bun.sleep(s.settle * 1000).then(() => {
          for (const e of endpoints) if (e.phase === "http" && e.proxy) memory.get(memoryKey(e))!.settled = memoryOf(e.proxy.pid);
        })
      : undefined;
    await runPhase(s, tools, "tls", endpoints, runs, memory, checkServers, backendPids);
    if (settled) {
      console.log(`waiting for the settled RSS reading (${s.settle}s after the HTTP load stopped)…`);
      await settled;
    }

    // ---- tables
    const summaries = new Map<LoadScenario, Map<TargetName, Summary>>();
    for (const [scenario, byTarget] of runs) {
      const map = new Map([...byTarget].map(([name, list]) => [name, summarize(scenario, list)] as const));
      addRatios(map);
      summaries.set(scenario, map);
    }
    console.log("");
    for (const scenario of ["small", "big", "https", "handshake", "h2"] as const) {
      const map = summaries.get(scenario);
      if (!map) continue;
      console.log(`${SCENARIO_TITLES[scenario]}`);
      console.log(scenarioTable(scenario, [...map], s.rounds));
      console.log("");
    }
    const memoryRows = (phase: Phase) =>
      endpoints.filter((e) => e.phase === phase && e.proxy).map((e) => [e.target, memory.get(memoryKey(e))!] as [string, MemoryRecord]);
    if (httpPhase && s.scenarios.has("rss")) {
      console.log(`RSS of each proxy, HTTP phase (process tree's VmRSS; after load = highest reading right after a run${s.settle > 0 ? `; settled = ${s.settle}s after the HTTP load stopped` : "; BENCH_SETTLE=60 adds the settled reading"})`);
      console.log(memoryTable(memoryRows("http"), s.settle > 0));
      console.log("");
    }
    if (tlsPhase) {
      console.log("RSS of each proxy, HTTPS phase (separate processes)");
      console.log(memoryTable(memoryRows("tls"), false));
      console.log("");
    }

    // ---- how it was measured
    const logBytes = summaries.get("small")?.get("parachute")?.log_bytes_per_request;
    if (logBytes !== undefined) console.log(`parachute request log: about ${Math.round(logBytes)} bytes per request written to its stdout (a file here); nginx runs with access_log off`);
    if (tlsPhase) {
      const notes = Object.entries(closeBehaviour).map(([n, c]) => `${n} ${c.closes ? "closes" : "does NOT close"}${c.closes && !c.says_close ? " (without saying Connection: close)" : ""}`);
      console.log(`TLS: ${s.tlsKey === "ec" ? "ECDSA P-256" : "RSA 2048"} certificate for ${TLS_HOST}; clients connect to 127.0.0.1 with SNI and Host ${TLS_HOST}. After "Connection: close": ${notes.join(", ")}`);
      const h2tls = summaries.get("h2")?.get("parachute")?.tls ?? summaries.get("h2")?.get("bun-min")?.tls;
      if (h2tls) console.log(`h2load negotiated: ${h2tls}`);
    }
    console.log(`backend: ${backendKind === "nginx" ? "nginx (1 worker, /small returns 3 bytes, /big a 1 MiB static file)" : "bench/backend.ts (Bun.serve)"} on ${upstream}`);
    console.log(`versions: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    console.log(`reproduce: ${invocation()}`);
    const example = (scenario: LoadScenario) => loadCommand(s, tools, scenario, "PORT", s.duration, "h2load.log");
    for (const scenario of runs.keys()) console.log(`  ${scenario}: ${commandLine(example(scenario))}`);
    for (const [name, cmd] of Object.entries(commands)) console.log(`  ${name}: ${cmd}`);
    console.log(
      "proxy CPU / client CPU: % of one core used by the proxy's processes / the load generator during the measured seconds; others: % of one core the machine spent on anything else (other work on a shared machine; a few % is the benchmark itself)",
    );

    const portOf = (id: LoadScenario, name: TargetName) => endpoints.find((e) => e.target === name && e.phase === (PHASE_SCENARIOS.http.includes(id) ? "http" : "tls"))?.port;
    const report = {
      date: new Date().toISOString(),
      command: invocation(),
      git: gitRevision(),
      host: { cpus: cpus.length, cpu_model: cpus[0]?.model.trim(), os: `${os.type()} ${os.release()}`, arch: os.arch(), busy_before_pct: backgroundPct },
      versions,
      backend: backendKind,
      settings: {
        duration_s: s.duration,
        warmup_s: s.warmup,
        rounds: s.rounds,
        connections: s.connections,
        threads: s.threads,
        big_connections: s.bigConnections,
        handshake_connections: s.handshakeConnections,
        h2_clients: s.h2Clients,
        h2_streams: s.h2Streams,
        settle_s: s.settle,
        quiet_max_wait_s: s.quiet,
        tls_key: s.tlsKey,
        scenarios: [...s.scenarios],
        load_generator: gen.tool,
      },
      commands: {
        ...Object.fromEntries([...runs.keys()].map((id) => [`load_${id}`, commandLine(example(id))])),
        ...commands,
      },
      // Small responses, as the report's "targets" have always been; every scenario is under "scenarios".
      targets: [...(runs.get("small") ?? [])].map(([name, list]) => ({ name, url: `http://127.0.0.1:${portOf("small", name)}${SMALL_PATH}`, summary: summaries.get("small")!.get(name), runs: list })),
      scenarios: Object.fromEntries(
        [...runs].map(([id, byTarget]) => [
          id,
          {
            title: SCENARIO_TITLES[id],
            targets: [...byTarget].map(([name, list]) => ({ name, port: portOf(id, name), summary: summaries.get(id)!.get(name), runs: list })),
          },
        ]),
      ),
      rss: Object.fromEntries(
        [...memory].map(([key, m]) => [key, { start_kb: m.start?.rss_kb, after_load_kb: afterLoad(m)?.rss_kb, peak_kb: (m.settled ?? m.after.at(-1))?.peak_kb, settled_kb: m.settled?.rss_kb, processes: m.start?.processes, after_each_run_kb: m.after.map((x) => x.rss_kb) }]),
      ),
      tls_close: closeBehaviour,
    };
    fs.mkdirSync(path.dirname(s.output), { recursive: true });
    fs.writeFileSync(s.output, JSON.stringify(report, null, 2) + "\n");
    console.log(`results: ${path.relative(process.cwd(), s.output) || s.output}`);
  } finally {
    await stopAll();
    if (s.profile && fs.existsSync(`${profileOut}.md`)) {
      const rel = path.relative(process.cwd(), profileOut);
      console.log(`CPU profile of parachute's first measured run (it slows that run a little): ${rel}.md, ${rel}.cpuprofile`);
    }
    if (s.keep) console.log(`kept ${dir}`);
    removeTempDir();
  }
}

/** The temporary directory to delete at the end (unset with BENCH_KEEP=1). */
let tempDir: string | undefined;
function removeTempDir() {
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
}

onInterrupt(async () => {
  await stopAll();
  removeTempDir();
});
try {
  await main();
} catch (error) {
  await stopAll();
  removeTempDir();
  console.error(`bench failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
