// Helpers for the traffic-control tests (add/rm, continuous health checks,
// pause/stop/resume, rollout, read targets): typed `list --json`, polling
// with a deadline, client load loops that tally every answer, and a
// before/after snapshot of the visible state (list + state file) to prove
// that a refused command changed nothing.
import * as fs from "node:fs";
import * as path from "node:path";
import { parachuteCommand, waitFor, type CliResult, type Proxy } from "./proxy.ts";

export interface TargetView {
  address: string;
  state: string;
  role: string;
  lastCheck: string;
}

export interface ServiceView {
  name: string;
  hosts: string[];
  pathPrefixes: string[];
  tls: boolean;
  state: string;
  message?: string;
  targets: TargetView[];
  rollout?: { percent: number; list: string[] };
}

/** `list --json`, parsed, with the traffic-control fields. */
export async function listServices(proxy: Proxy): Promise<ServiceView[]> {
  const result = await proxy.cli(["list", "--json"]);
  if (result.code !== 0) throw new Error(`list --json exited ${result.code}: ${result.stderr}`);
  return (JSON.parse(result.stdout) as { services: ServiceView[] }).services;
}

export async function getService(proxy: Proxy, name: string): Promise<ServiceView | undefined> {
  return (await listServices(proxy)).find((s) => s.name === name);
}

/** The target with this address in `list --json`, if listed. */
export async function getTarget(proxy: Proxy, service: string, address: string): Promise<TargetView | undefined> {
  return (await getService(proxy, service))?.targets.find((t) => t.address === address);
}

/**
 * Polls `check` until it returns a truthy value (returned) or the deadline
 * passes (throws, naming `what`). The short pause between polls is the only
 * sleep; the wait is bounded by the condition.
 */
export function eventually<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, intervalMs = 25): Promise<NonNullable<T>> {
  return waitFor(what, check, { timeoutMs, intervalMs });
}

/** Is the promise still unsettled right now? */
export function isPending(promise: Promise<unknown>): boolean {
  return Bun.peek.status(promise) === "pending";
}

/** GET /services on the admin socket: what `list --json` prints, without starting a CLI process (for polling). */
export async function adminServices(proxy: Proxy): Promise<ServiceView[]> {
  const res = await fetch("http://parachute/services", { unix: proxy.socket });
  if (!res.ok) throw new Error(`GET /services answered ${res.status}`);
  return ((await res.json()) as { services: ServiceView[] }).services;
}

/** The state file's bytes, or a marker when there is none. */
export function stateFileText(proxy: Proxy): string {
  const file = path.join(proxy.stateDir, "parachute.state");
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "<no state file>";
}

/** A cheap snapshot for many comparisons in a row: the admin API's service list and the state file. */
export async function quickSnapshot(proxy: Proxy): Promise<{ services: string; stateFile: string }> {
  return { services: JSON.stringify(await adminServices(proxy)), stateFile: stateFileText(proxy) };
}

/** What the visible state is: `list --json` output and the state file's bytes. */
export async function snapshot(proxy: Proxy): Promise<{ list: string; stateFile: string }> {
  const list = await proxy.cli(["list", "--json"]);
  if (list.code !== 0) throw new Error(`list --json exited ${list.code}: ${list.stderr}`);
  return { list: list.stdout, stateFile: stateFileText(proxy) };
}

/** Deploys or throws with the CLI's output. */
export async function mustRun(proxy: Proxy, args: string[]) {
  const result = await proxy.cli(args);
  if (result.code !== 0) throw new Error(`parachute ${args.join(" ")} exited ${result.code}:\n${result.stderr}`);
  return result;
}

export interface Sample {
  /** performance.now() when the request was sent. */
  sentAt: number;
  status: number;
  backend: string;
  error?: string;
}

export interface Load {
  samples: Sample[];
  /** Stops the loops and waits for their last requests. */
  stop(): Promise<Sample[]>;
  /** Resolves once at least `n` answers have come back. */
  reached(n: number, timeoutMs?: number): Promise<unknown>;
}

/**
 * `loops` client loops requesting `path` on `host` back to back until
 * stopped (each capped at `maxPerLoop` requests, so the run stays bounded;
 * `reached` fails at once if the cap ends the loops first).
 */
export function startLoad(
  proxy: Proxy,
  host: string,
  options: { loops?: number; path?: string; maxPerLoop?: number; /** pacing between one loop's requests, to spare a busy CPU */ gapMs?: number } = {},
): Load {
  const samples: Sample[] = [];
  let stopped = false;
  const loop = async (n: number) => {
    for (let i = 0; i < (options.maxPerLoop ?? 5000) && !stopped; i++) {
      const sentAt = performance.now();
      try {
        const res = await proxy.fetch(`${options.path ?? "/echo"}?loop=${n}&i=${i}`, { host });
        await res.arrayBuffer();
        samples.push({ sentAt, status: res.status, backend: res.headers.get("x-backend") ?? "" });
      } catch (error) {
        samples.push({ sentAt, status: 0, backend: "", error: (error as Error).message });
      }
      if (options.gapMs) await Bun.sleep(options.gapMs);
    }
  };
  let finished = false;
  const done = Promise.all(Array.from({ length: options.loops ?? 4 }, (_, n) => loop(n))).then(() => {
    finished = true;
  });
  return {
    samples,
    async stop() {
      stopped = true;
      await done;
      return samples;
    },
    reached: (n, timeoutMs = 10_000) =>
      eventually(
        `${n} answers under load`,
        () => {
          if (samples.length >= n) return true;
          if (finished) throw new Error(`the load loops reached their request cap after ${samples.length} answers`);
          return false;
        },
        timeoutMs,
      ),
  };
}

/** Samples that are not a 200 from one of `backends`, described for an assertion message. */
export function failures(samples: Sample[], backends: string[]): string[] {
  return samples
    .filter((s) => s.status !== 200 || !backends.includes(s.backend))
    .map((s) => `${s.status} from "${s.backend}"${s.error ? `: ${s.error}` : ""}`);
}

export function countBy(samples: Sample[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const s of samples) counts[s.backend] = (counts[s.backend] ?? 0) + 1;
  return counts;
}

/** Which backend answered a GET (from the `x-backend` header), asserting a 200. */
export async function backendOf(proxy: Proxy, host: string, init: RequestInit = {}, pathAndQuery = "/echo"): Promise<string> {
  const res = await proxy.fetch(pathAndQuery, { ...init, host });
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${init.method ?? "GET"} ${pathAndQuery} on ${host} answered ${res.status}`);
  return res.headers.get("x-backend") ?? "";
}

/**
 * Waits for a log line matching `predicate` that is logged after this call
 * (lines already in the log do not count), e.g. the next health change.
 */
export function nextLog(proxy: Proxy, predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000) {
  const start = proxy.logs.length;
  return proxy.waitForLog((line) => predicate(line) && proxy.logs.indexOf(line) >= start, timeoutMs);
}

/** Predicate for `Target health changed` of `address` to `to`. */
export function healthChanged(address: string, to: string) {
  return (line: Record<string, unknown>) => line.msg === "Target health changed" && line.target === address && line.to === to;
}

/**
 * Restarts the server with the same state directory and socket, and waits
 * for the NEW process's `Server started` (Proxy.spawn alone would match the
 * previous process's line, which is still in the log, and keep its port).
 */
export async function restart(proxy: Proxy, signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
  const started = (l: Record<string, unknown>) => l.msg === "Server started";
  const before = proxy.logs.filter(started).length;
  const code = await proxy.kill(signal);
  await proxy.spawn();
  const line = await proxy.waitForLog((l) => started(l) && proxy.logs.filter(started).indexOf(l) >= before, 15_000);
  proxy.httpPort = Number(line.http_port);
  return code;
}

export interface RunningCli {
  /** stderr lines printed so far (progress output). */
  stderrLines: string[];
  /** Resolves once a stderr line matching `predicate` has been printed. */
  waitForLine(predicate: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  done: Promise<CliResult>;
}

/**
 * Runs a client command against `proxy` and exposes its stderr as it is
 * printed, to observe progress output while the command is still waiting.
 */
export function spawnCli(proxy: Proxy, args: string[]): RunningCli {
  const proc = Bun.spawn([...parachuteCommand(), ...args, "--socket", proxy.socket], {
    env: { ...process.env, NO_COLOR: "1" },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const stderrLines: string[] = [];
  let stderr = "";
  const readStderr = (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of proc.stderr) {
      const text = decoder.decode(chunk, { stream: true });
      stderr += text;
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) !== -1) {
        stderrLines.push(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    }
    if (buffered) stderrLines.push(buffered);
  })();
  const done = Promise.all([new Response(proc.stdout).text(), readStderr, proc.exited]).then(([stdout, , code]) => ({ code, stdout, stderr }));
  return {
    stderrLines,
    waitForLine: (predicate, timeoutMs = 10_000) =>
      eventually(
        "a matching line on the command's stderr",
        () => {
          const line = stderrLines.find(predicate);
          if (line !== undefined) return line;
          if (proc.exitCode !== null) throw new Error(`command exited ${proc.exitCode} first:\n${stderr}`);
          return undefined;
        },
        timeoutMs,
      ),
    done,
  };
}
