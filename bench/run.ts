// Load benchmark: the same hello-world backend measured directly, through the
// real parachute process, and through nginx (when installed), with wrk
// (else bombardier, else bench/client.ts). Run with `bun run bench`.
//
// Settings (environment):
//   BENCH_DURATION     seconds measured per target and round (default 5)
//   BENCH_CONNECTIONS  concurrent connections (default 64)
//   BENCH_THREADS      wrk threads (default 2, at most the connections)
//   BENCH_WARMUP       seconds of unmeasured load before each measurement (default 1)
//   BENCH_ROUNDS       rounds, targets interleaved in a rotating order; medians reported (default 1)
//   BENCH_LOADGEN      force wrk | bombardier | builtin
//   BENCH_NGINX        path to nginx, or 0 to skip it
//   BENCH_BASELINE     0 skips the "bun-fetch" row (bench/forwarder.ts, a minimal Bun fetch forwarder)
//   BENCH_PROFILE=1    write a CPU profile of parachute (source runs only) to bench/results/profile/
//   BENCH_KEEP=1       keep the temporary directory (logs, nginx config, state)
//   BENCH_OUTPUT       JSON report path (default bench/results/latest.json)
//   PARACHUTE_BIN      run this compiled binary instead of `bun src/main.ts`
//
// Every process is a child of this one and listens on 127.0.0.1 only; all are
// stopped on exit, on error and on SIGINT/SIGTERM.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chooseLoadGenerator, type LoadGenerator, type LoadResult } from "./loadgen.ts";
import { findNginx, nginxVersion, startNginx } from "./nginx.ts";
import { cpuSeconds, freePort, hostBusyPct, hostCpuTimes, onInterrupt, runToEnd, spawnChild, stopAll, waitForFile, type Child } from "./procs.ts";

const ROOT = path.resolve(import.meta.dir, "..");
const BACKEND_BODY = "Hello, World!\n";

// ---------------------------------------------------------------- settings

function numberSetting(name: string, fallback: number, min: number, max: number, integer = true): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw.trim().replace(/s$/, ""));
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be ${integer ? "an integer" : "a number"} from ${min} to ${max} (got "${raw}")`);
  }
  return value;
}

interface Settings {
  duration: number;
  connections: number;
  threads: number;
  warmup: number;
  rounds: number;
  profile: boolean;
  keep: boolean;
  output: string;
  parachuteBin: string | undefined;
}

function readSettings(): Settings {
  const connections = numberSetting("BENCH_CONNECTIONS", 64, 1, 10_000);
  const bin = process.env.PARACHUTE_BIN?.trim();
  return {
    duration: numberSetting("BENCH_DURATION", 5, 1, 600),
    connections,
    threads: Math.min(numberSetting("BENCH_THREADS", 2, 1, 64), connections),
    warmup: numberSetting("BENCH_WARMUP", 1, 0, 60),
    rounds: numberSetting("BENCH_ROUNDS", 1, 1, 20),
    profile: process.env.BENCH_PROFILE === "1",
    keep: process.env.BENCH_KEEP === "1",
    output: path.resolve(ROOT, process.env.BENCH_OUTPUT || "bench/results/latest.json"),
    parachuteBin: bin ? path.resolve(ROOT, bin) : undefined,
  };
}

// ---------------------------------------------------------------- processes

function parachuteCommand(s: Settings): string[] {
  if (s.parachuteBin) return [s.parachuteBin];
  // BENCH_PROFILE: the same program, wrapped by the inspector profiler.
  return [process.execPath, s.profile ? path.join(import.meta.dir, "profile-entry.ts") : path.join(ROOT, "src/main.ts")];
}

function firstJsonLine<T>(text: string, match: (line: Record<string, unknown>) => boolean, pick: (line: Record<string, unknown>) => T): T | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const json = JSON.parse(line) as Record<string, unknown>;
      if (match(json)) return pick(json);
    } catch {
      // a partial line still being written
    }
  }
  return undefined;
}

async function startBackend(dir: string): Promise<{ child: Child; port: number }> {
  const out = path.join(dir, "backend.out");
  const fd = fs.openSync(out, "w");
  const child = spawnChild("backend", [process.execPath, path.join(import.meta.dir, "backend.ts")], { stdout: fd, stderr: fd, env: { NODE_ENV: "production" } });
  fs.closeSync(fd);
  const port = await waitForFile(out, child, 10_000, (text) => firstJsonLine(text, (l) => typeof l.port === "number", (l) => l.port as number));
  return { child, port };
}

/** The minimal Bun forwarder (bench/forwarder.ts) in front of the backend. */
async function startForwarder(dir: string, backendPort: number): Promise<{ child: Child; port: number }> {
  const out = path.join(dir, "forwarder.out");
  const fd = fs.openSync(out, "w");
  const child = spawnChild("bun-fetch forwarder", [process.execPath, path.join(import.meta.dir, "forwarder.ts")], {
    stdout: fd,
    stderr: fd,
    env: { NODE_ENV: "production", BENCH_UPSTREAM: `http://127.0.0.1:${backendPort}` },
  });
  fs.closeSync(fd);
  const port = await waitForFile(out, child, 10_000, (text) => firstJsonLine(text, (l) => typeof l.port === "number", (l) => l.port as number));
  return { child, port };
}

async function startParachute(s: Settings, dir: string, profileOut: string) {
  const stateDir = path.join(dir, "state");
  const socket = path.join(dir, "admin.sock");
  const logFile = path.join(dir, "parachute.log");
  const command = [
    ...parachuteCommand(s),
    "run",
    "--http-port",
    "0",
    "--https-port",
    "0",
    "--bind",
    "127.0.0.1",
    "--state-dir",
    stateDir,
    "--socket",
    socket,
  ];
  // Request logs go to a file, the cheapest sink there is, so that reading
  // them never costs the benchmark CPU; a journald or pipe sink costs more.
  const fd = fs.openSync(logFile, "w");
  const child = spawnChild("parachute", command, { stdout: fd, stderr: fd, cwd: dir, env: s.profile ? { BENCH_PROFILE_OUT: profileOut } : {} });
  fs.closeSync(fd);
  const port = await waitForFile(logFile, child, 20_000, (text) =>
    firstJsonLine(text, (l) => l.msg === "Server started", (l) => Number(l.http_port)),
  );
  return { child, port, socket, logFile, command };
}

async function deploy(s: Settings, dir: string, socket: string, backendPort: number): Promise<string[]> {
  const command = [...parachuteCommand({ ...s, profile: false }), "deploy", "bench", "--target", `127.0.0.1:${backendPort}`, "--socket", socket];
  const result = await runToEnd("parachute deploy", command, 45_000);
  if (result.code !== 0) throw new Error(`deploy failed (exit ${result.code}):\n${result.stderr}${result.stdout}`);
  return command;
}

/** One request must come back 200 with the backend's body before we measure anything. */
async function checkTarget(name: string, url: string) {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = await res.text();
  if (res.status !== 200 || body !== BACKEND_BODY) {
    throw new Error(`${name} (${url}) answered ${res.status} ${JSON.stringify(body.slice(0, 200))} instead of the backend's hello world`);
  }
}

/** Fails the benchmark, with the end of the process's output, when a server process has died. */
function checkAlive(child: Child, logFile: string) {
  if (child.alive()) return;
  let tail = "";
  try {
    tail = fs
      .readFileSync(logFile, "utf8")
      .split("\n")
      .filter((l) => !l.includes('"msg":"Request"'))
      .slice(-20)
      .join("\n");
  } catch {
    // no output
  }
  const how = child.proc.signalCode ? `signal ${child.proc.signalCode}` : `exit code ${child.proc.exitCode}`;
  throw new Error(`${child.name} (pid ${child.pid}) died during the benchmark (${how}); last output:\n${tail}`);
}

// ---------------------------------------------------------------- measuring

interface Target {
  name: "direct" | "parachute" | "bun-fetch" | "nginx";
  url: string;
  /** The proxy's processes (none for direct). */
  proxyPids: number[];
  backendPids: number[];
  /** File that grows with every request (parachute's request log), to report log volume. */
  logFile?: string;
  /** BENCH_PROFILE: the process to profile (SIGUSR2 starts and stops profile-entry.ts's profiler) and the report it writes. */
  profile?: { child: Child; report: string; done: boolean };
}

interface Measurement extends LoadResult {
  round: number;
  proxy_cpu_pct?: number;
  backend_cpu_pct?: number;
  /** Share of all the machine's cores busy during the run (load generator, proxy, backend and anything else). */
  host_busy_pct?: number;
  log_bytes_per_request?: number;
}

async function loadRun(gen: LoadGenerator, s: Settings, url: string, seconds: number): Promise<LoadResult> {
  const command = gen.command(url, s.connections, s.threads, seconds);
  const result = await runToEnd(gen.tool, command, (seconds + 30) * 1000);
  if (result.code !== 0) throw new Error(`${command.join(" ")} exited with ${result.code}:\n${result.stderr}${result.stdout}`);
  return gen.parse(result.stdout);
}

function fileSize(file: string | undefined): number | undefined {
  if (!file) return undefined;
  try {
    return fs.statSync(file).size;
  } catch {
    return undefined;
  }
}

const pct = (before: number | undefined, after: number | undefined, seconds: number) =>
  before === undefined || after === undefined || seconds <= 0 ? undefined : ((after - before) / seconds) * 100;

async function measure(gen: LoadGenerator, s: Settings, target: Target, round: number): Promise<Measurement> {
  if (s.warmup > 0) await loadRun(gen, s, target.url, s.warmup);
  await Bun.sleep(200);
  const proxyBefore = target.proxyPids.length ? cpuSeconds(target.proxyPids) : undefined;
  const backendBefore = cpuSeconds(target.backendPids);
  const logBefore = fileSize(target.logFile);
  const profile = target.profile && !target.profile.done ? target.profile : undefined;
  if (profile) {
    profile.child.proc.kill("SIGUSR2");
    await Bun.sleep(100);
  }
  const hostBefore = hostCpuTimes();
  const result = await loadRun(gen, s, target.url, s.duration);
  const hostAfter = hostCpuTimes();
  if (profile) {
    profile.done = true;
    profile.child.proc.kill("SIGUSR2");
    await waitForFile(profile.report, profile.child, 30_000, (text) => (text ? true : undefined));
  }
  const proxyAfter = target.proxyPids.length ? cpuSeconds(target.proxyPids) : undefined;
  const backendAfter = cpuSeconds(target.backendPids);
  const logAfter = fileSize(target.logFile);
  const m: Measurement = { ...result, round };
  const seconds = result.seconds || s.duration;
  const proxyCpu = pct(proxyBefore, proxyAfter, seconds);
  const backendCpu = pct(backendBefore, backendAfter, seconds);
  if (proxyCpu !== undefined) m.proxy_cpu_pct = proxyCpu;
  if (backendCpu !== undefined) m.backend_cpu_pct = backendCpu;
  const hostBusy = hostBusyPct(hostBefore, hostAfter);
  if (hostBusy !== undefined) m.host_busy_pct = hostBusy;
  // wrk's count misses requests still in flight at the end, so this is approximate.
  if (logBefore !== undefined && logAfter !== undefined && result.requests > 0) m.log_bytes_per_request = (logAfter - logBefore) / result.requests;
  return m;
}

function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Summary {
  rps: number;
  rps_min: number;
  rps_max: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  non2xx: number;
  proxy_cpu_pct?: number;
  backend_cpu_pct?: number;
  host_busy_pct?: number;
  log_bytes_per_request?: number;
  rps_vs_direct?: number;
  rps_vs_nginx?: number;
}

function summarize(runs: Measurement[]): Summary {
  const of = (k: keyof Measurement) => runs.map((r) => r[k] as number | undefined).filter((v): v is number => v !== undefined);
  const summary: Summary = {
    rps: median(of("rps")),
    rps_min: Math.min(...of("rps")),
    rps_max: Math.max(...of("rps")),
    p50_ms: median(of("p50_ms")),
    p99_ms: median(of("p99_ms")),
    errors: of("errors").reduce((a, b) => a + b, 0),
    non2xx: of("non2xx").reduce((a, b) => a + b, 0),
  };
  for (const k of ["proxy_cpu_pct", "backend_cpu_pct", "host_busy_pct", "log_bytes_per_request"] as const) {
    const values = of(k);
    if (values.length) summary[k] = median(values);
  }
  return summary;
}

// ---------------------------------------------------------------- report

function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "-";
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 100 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  const rule = "|" + widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":")).join("|") + "|";
  return [line(header), rule, ...rows.map(line)].join("\n");
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

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

async function main() {
  const s = readSettings();
  const gen = await chooseLoadGenerator(process.env.BENCH_LOADGEN);
  const nginxBin = findNginx(process.env.BENCH_NGINX);
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
  const targetCount = 2 + (nginxBin ? 1 : 0) + (process.env.BENCH_BASELINE === "0" ? 0 : 1);
  const estimate = s.rounds * targetCount * (s.duration + s.warmup + 1);
  console.log(`parachute load benchmark: ${gen.tool}, ${s.connections} connections, ${s.duration}s per run (+${s.warmup}s warmup), ${s.rounds} round(s), about ${estimate}s`);
  const idleBefore = hostCpuTimes();
  await Bun.sleep(1000);
  const backgroundPct = hostBusyPct(idleBefore, hostCpuTimes());
  console.log(`host: ${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ${os.type()} ${os.release()}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}${backgroundPct === undefined ? "" : `, ${Math.round(backgroundPct)}% busy before the benchmark`}`);
  if (backgroundPct !== undefined && backgroundPct > 10) {
    console.log(`warning: something else is using ${Math.round(backgroundPct)}% of the CPUs; numbers will be noisy (use BENCH_ROUNDS=5 for medians)`);
  }
  if (!nginxBin) console.log("nginx: not installed (or BENCH_NGINX=0), skipping the nginx comparison");

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-bench-"));
  tempDir = s.keep ? undefined : dir;
  try {
    const backend = await startBackend(dir);
    const parachute = await startParachute(s, dir, profileOut);
    const deployCommand = await deploy(s, dir, parachute.socket, backend.port);
    const targets: Target[] = [
      { name: "direct", url: `http://127.0.0.1:${backend.port}/`, proxyPids: [], backendPids: [backend.child.pid] },
      {
        name: "parachute",
        url: `http://127.0.0.1:${parachute.port}/`,
        proxyPids: [parachute.child.pid],
        backendPids: [backend.child.pid],
        logFile: parachute.logFile,
        ...(s.profile ? { profile: { child: parachute.child, report: `${profileOut}.md`, done: false } } : {}),
      },
    ];
    if (process.env.BENCH_BASELINE !== "0") {
      const forwarder = await startForwarder(dir, backend.port);
      targets.push({ name: "bun-fetch", url: `http://127.0.0.1:${forwarder.port}/`, proxyPids: [forwarder.child.pid], backendPids: [backend.child.pid] });
    }
    let nginxCommand: string[] | undefined;
    if (nginxBin) {
      const nginx = await startNginx(nginxBin, { dir, port: freePort(), upstreamPort: backend.port, connections: s.connections });
      nginxCommand = nginx.command;
      targets.push({ name: "nginx", url: `http://127.0.0.1:${nginx.port}/`, proxyPids: nginx.pids, backendPids: [backend.child.pid] });
    }
    for (const t of targets) await checkTarget(t.name, t.url);

    const runs = new Map<Target["name"], Measurement[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < s.rounds; round++) {
      // Rotate the order every round so that no target always runs first (cold) or last (hot).
      const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
      for (const target of order) {
        process.stdout.write(`round ${round + 1}/${s.rounds} ${target.name.padEnd(9)} `);
        const m = await measure(gen, s, target, round + 1);
        checkAlive(backend.child, path.join(dir, "backend.out"));
        checkAlive(parachute.child, parachute.logFile);
        if (m.requests === 0) throw new Error(`no request to ${target.name} (${target.url}) succeeded (${m.errors} errors)`);
        runs.get(target.name)!.push(m);
        console.log(`${Math.round(m.rps).toString().padStart(7)} req/s  p50 ${fmtMs(m.p50_ms)}  p99 ${fmtMs(m.p99_ms)}${m.errors || m.non2xx ? `  errors ${m.errors} non-2xx ${m.non2xx}` : ""}`);
        await Bun.sleep(300);
      }
    }

    const summaries = new Map(targets.map((t) => [t.name, summarize(runs.get(t.name)!)]));
    const direct = summaries.get("direct")!;
    const nginx = summaries.get("nginx");
    for (const summary of summaries.values()) {
      summary.rps_vs_direct = summary.rps / direct.rps;
      if (nginx) summary.rps_vs_nginx = summary.rps / nginx.rps;
    }

    const ratio = (r: number | undefined) => (r === undefined ? "-" : `${r.toFixed(2)}×`);
    const cpu = (c: number | undefined) => (c === undefined ? "-" : `${Math.round(c)}%`);
    const rows = targets.map((t) => {
      const x = summaries.get(t.name)!;
      const rps = Math.round(x.rps).toLocaleString("en-US") + (s.rounds > 1 ? ` (${Math.round(x.rps_min / 1000)}–${Math.round(x.rps_max / 1000)}k)` : "");
      return [t.name, rps, fmtMs(x.p50_ms), fmtMs(x.p99_ms), String(x.errors + x.non2xx), cpu(x.proxy_cpu_pct), cpu(x.backend_cpu_pct), cpu(x.host_busy_pct), ratio(x.rps_vs_nginx), ratio(x.rps_vs_direct)];
    });
    console.log("");
    console.log(
      table(["target", s.rounds > 1 ? `req/s (median, range)` : "req/s", "p50", "p99", "errors", "proxy CPU", "backend CPU", "host busy", "vs nginx", "vs direct"], rows),
    );
    const logBytes = summaries.get("parachute")!.log_bytes_per_request;
    console.log("");
    if (logBytes !== undefined) console.log(`parachute request log: about ${Math.round(logBytes)} bytes per request written to its stdout (a file here); nginx runs with access_log off`);
    console.log(`versions: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    console.log(`reproduce: ${invocation()}`);
    console.log(`load generator: ${gen.command("URL", s.connections, s.threads, s.duration).map(shellQuote).join(" ")}`);
    console.log(`  URLs: ${targets.map((t) => `${t.name} ${t.url}`).join(", ")}`);
    console.log(`parachute: ${parachute.command.map(shellQuote).join(" ")}`);
    if (summaries.has("bun-fetch")) console.log("bun-fetch: bench/forwarder.ts, a minimal Bun.serve + fetch forwarder (no routing, logs or metrics): the ceiling for a proxy on this runtime");
    if (nginxCommand) console.log(`nginx: ${nginxCommand.map(shellQuote).join(" ")} (1 worker, keepalive 64 upstream, access_log off)`);
    console.log(
      `proxy/backend CPU: share of one core used during the measured seconds; host busy: share of all ${cpus.length} cores (wrk, proxy, backend and anything else share them)`,
    );

    const report = {
      date: new Date().toISOString(),
      command: invocation(),
      git: gitRevision(),
      host: { cpus: cpus.length, cpu_model: cpus[0]?.model.trim(), os: `${os.type()} ${os.release()}`, arch: os.arch(), busy_before_pct: backgroundPct },
      versions,
      settings: { duration_s: s.duration, warmup_s: s.warmup, connections: s.connections, threads: s.threads, rounds: s.rounds, load_generator: gen.tool },
      commands: {
        load_generator: gen.command("URL", s.connections, s.threads, s.duration),
        parachute: parachute.command,
        deploy: deployCommand,
        nginx: nginxCommand,
        backend: [process.execPath, path.join(import.meta.dir, "backend.ts")],
        bun_fetch: [process.execPath, path.join(import.meta.dir, "forwarder.ts")],
      },
      targets: targets.map((t) => ({ name: t.name, url: t.url, summary: summaries.get(t.name), runs: runs.get(t.name) })),
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
