// Child processes of the benchmark: every one is registered here so that a
// normal end, an error, SIGINT or SIGTERM all stop the same set, and a last
// synchronous SIGKILL on "exit" catches anything still alive.
import * as fs from "node:fs";
import type { Subprocess } from "bun";

export interface Child {
  name: string;
  proc: Subprocess;
  pid: number;
  exited: Promise<number>;
  alive(): boolean;
}

const children = new Set<Child>();

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  /** "pipe" to read it, a file descriptor to write into a file, or "ignore". */
  stdout?: "pipe" | "ignore" | number;
  stderr?: "pipe" | "ignore" | number;
  cwd?: string;
}

export function spawnChild(name: string, cmd: string[], options: SpawnOptions = {}): Child {
  const proc = Bun.spawn(cmd, {
    env: { ...process.env, NO_COLOR: "1", ...options.env },
    stdin: "ignore",
    stdout: options.stdout ?? "ignore",
    stderr: options.stderr ?? "ignore",
    cwd: options.cwd,
  });
  const child: Child = {
    name,
    proc,
    pid: proc.pid,
    exited: proc.exited,
    alive: () => proc.exitCode === null && proc.signalCode === null,
  };
  children.add(child);
  void proc.exited.then(() => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: Child, graceMs = 3000): Promise<void> {
  if (!child.alive()) return;
  child.proc.kill("SIGTERM");
  const outcome = await Promise.race([child.exited.then(() => "exited"), Bun.sleep(graceMs).then(() => "timeout")]);
  if (outcome === "timeout" && child.alive()) {
    child.proc.kill("SIGKILL");
    await child.exited;
  }
}

let stopping: Promise<void> | undefined;

/** Stops every child still running (newest first). Idempotent. */
export function stopAll(): Promise<void> {
  stopping ??= (async () => {
    const all = [...children].reverse();
    await Promise.all(all.map((c) => stopChild(c)));
  })();
  return stopping;
}

process.on("exit", () => {
  for (const child of children) {
    if (child.alive()) child.proc.kill("SIGKILL");
  }
});

/** Runs `cleanup` and exits on SIGINT/SIGTERM. */
export function onInterrupt(cleanup: () => Promise<void>) {
  let interrupted = false;
  const handler = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: stopping the benchmark processes…`);
    const force = setTimeout(() => process.exit(130), 10_000);
    void cleanup().finally(() => {
      clearTimeout(force);
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

/** Runs a command to completion with a time limit; the process is killed when the limit passes. */
export async function runToEnd(
  name: string,
  cmd: string[],
  timeoutMs: number,
  env: Record<string, string | undefined> = {},
): Promise<{ code: number; stdout: string; stderr: string; cpuSeconds: number | undefined }> {
  const child = spawnChild(name, cmd, { env, stdout: "pipe", stderr: "pipe" });
  const proc = child.proc as Subprocess<"ignore", "pipe", "pipe">;
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      child.exited,
    ]);
    if (proc.signalCode === "SIGKILL") throw new Error(`${name} did not finish within ${timeoutMs / 1000}s: ${cmd.join(" ")}`);
    const usage = proc.resourceUsage();
    return { code, stdout, stderr, cpuSeconds: usage ? Number(usage.cpuTime.total) / 1e6 : undefined };
  } finally {
    clearTimeout(timer);
  }
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close it). */
export function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** Polls `url` until it answers `status`, the child exits, or the time runs out. */
export async function waitForHttp(url: string, child: Child | undefined, timeoutMs: number, status = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (child && !child.alive()) throw new Error(`${child.name} exited (code ${child.proc.exitCode}) before ${url} answered`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000), keepalive: false });
      await res.arrayBuffer();
      if (res.status === status) return;
      last = `status ${res.status}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs / 1000}s (last: ${last})`);
}

/** Polls until 127.0.0.1:`port` accepts a TCP connection, the child exits, or the time runs out. */
export async function waitForPort(port: number, child: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!child.alive()) throw new Error(`${child.name} exited (code ${child.proc.exitCode}) before port ${port} opened`);
    try {
      const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      socket.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`port ${port} did not open within ${timeoutMs / 1000}s`);
}

/** Polls a file until `find` returns a value, the child exits, or the time runs out. */
export async function waitForFile<T>(file: string, child: Child, timeoutMs: number, find: (text: string) => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
    const found = find(text);
    if (found !== undefined) return found;
    if (!child.alive()) throw new Error(`${child.name} exited with ${child.proc.exitCode}:\n${text.slice(-2000)}`);
    await Bun.sleep(50);
  }
  throw new Error(`${child.name} did not become ready within ${timeoutMs / 1000}s`);
}

/** CPU seconds (user + system) used so far by these pids, from /proc (Linux); undefined elsewhere. */
export function cpuSeconds(pids: number[]): number | undefined {
  try {
    let ticks = 0;
    for (const pid of pids) {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    }
    return ticks / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
// USER_HZ is 100 on every mainstream Linux build.
const CLOCK_TICKS = 100;

/** Direct children of `pid` (Linux), e.g. nginx's worker under its master. */
export function childPids(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const entry of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === pid) out.push(Number(entry));
      } catch {
        // the process went away while we looked
      }
    }
    return out;
  } catch {
    return [];
  }
}

/** `pid` and all its descendants (Linux): a server that forks workers is measured whole. */
export function processTree(pid: number): number[] {
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...childPids(tree[i]!));
  return tree;
}

/** Busy and total CPU time of the whole machine so far, from /proc/stat (Linux); undefined elsewhere. */
export function hostCpuTimes(): { busy: number; total: number } | undefined {
  try {
    const line = fs.readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const total = values.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal; guest is already in user
    const idle = (values[3] ?? 0) + (values[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** CPU seconds (summed over all cores) the whole machine was busy between two hostCpuTimes() samples. */
export function hostBusySeconds(before: ReturnType<typeof hostCpuTimes>, after: ReturnType<typeof hostCpuTimes>): number | undefined {
  return before && after ? (after.busy - before.busy) / CLOCK_TICKS : undefined;
}

/** Share (0–100) of all cores that was busy between two hostCpuTimes() samples. */
export function hostBusyPct(before: ReturnType<typeof hostCpuTimes>, after: ReturnType<typeof hostCpuTimes>): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  return ((after.busy - before.busy) / (after.total - before.total)) * 100;
}
