// Starts the real parachute server as a child process (the source via bun,
// or the compiled binary when PARACHUTE_BIN is set) and runs real CLI
// commands against it. Everything listens on 127.0.0.1 with port 0.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Subprocess } from "bun";

const ROOT = path.resolve(import.meta.dir, "../..");

/** The command that runs parachute: the compiled binary in CI's binary pass, else the source. */
export function parachuteCommand(): string[] {
  const bin = process.env.PARACHUTE_BIN;
  return bin ? [path.resolve(ROOT, bin)] : [process.execPath, path.join(ROOT, "src/main.ts")];
}

/**
 * Per-test and per-hook timeouts for tests that start processes: a plain
 * `bun test FILE` has a 5 s default, which a loaded 2-core machine can exceed.
 */
export const SLOW_TEST = 20_000;
export const HOOK_TIMEOUT = 20_000;

let tempRoot: string | undefined;

/**
 * The directory that holds every `tempDir` of this test process, removed with
 * all in it once the process has exited, whatever the tests' outcome (a failed
 * test, a hook that threw, Ctrl-C, a kill -9). `bun test` runs no exit hooks,
 * so a small watcher process does it: detached, ignoring the terminal's
 * signals, it waits for this process to end, then removes the directory.
 */
function testRoot(): string {
  if (tempRoot) return tempRoot;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-tests-"));
  const script =
    'trap "" INT TERM HUP; tail --pid="$1" -f /dev/null 2>/dev/null || while kill -0 "$1" 2>/dev/null; do sleep 1; done; rm -rf "$2"';
  Bun.spawn(["sh", "-c", script, "parachute-test-janitor", String(process.pid), root], {
    stdio: ["ignore", "ignore", "ignore"],
    detached: true,
  }).unref();
  tempRoot = root;
  return root;
}

/** A new directory, removed when this test process has exited (see `testRoot`). */
export function tempDir(prefix = "parachute-test-"): string {
  return fs.mkdtempSync(path.join(testRoot(), prefix));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Set when the command was still running at `timeoutMs` and was killed. */
  timedOut?: boolean;
}

export interface RunCliOptions {
  /** Kill the command (SIGKILL) if it has not exited after this long; the result then has `timedOut`. */
  timeoutMs?: number;
  /** Working directory of the command (default: the test's). */
  cwd?: string;
}

/** Runs a parachute command to completion. */
export async function runCli(args: string[], env: Record<string, string | undefined> = {}, options: RunCliOptions = {}): Promise<CliResult> {
  const proc = Bun.spawn([...parachuteCommand(), ...args], {
    env: { ...process.env, NO_COLOR: "1", ...env },
    cwd: options.cwd,
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  let timedOut = false;
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          proc.kill("SIGKILL");
        }, options.timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return timedOut ? { code, stdout, stderr, timedOut } : { code, stdout, stderr };
}

/** Is a process with this pid running? A zombie (exited, not yet reaped by whoever adopted it) is not. */
export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

const handedOut = new Set<number>();

/**
 * A TCP port that was free a moment ago on 127.0.0.1 (bound to port 0, then
 * closed). The kernel may offer a just-closed port again, so a port is never
 * handed out twice in one test process: two servers of one test must not be
 * given the same port.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = server.port;
    server.stop(true);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/**
 * Polls `check` until it returns a truthy value (which is returned) or the
 * deadline passes (then throws, naming `what`). The short sleep between polls
 * is the only sleep: the wait itself is bounded by the condition.
 */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = performance.now() + (options.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (error) {
      last = error;
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    await Bun.sleep(options.intervalMs ?? 20);
  }
}

export interface ProxyOptions {
  stateDir?: string;
  socket?: string;
  env?: Record<string, string | undefined>;
  args?: string[];
  /**
   * Default `run` flags the harness should NOT pass (`http-port`, `https-port`,
   * `bind`, `socket`), e.g. to observe the environment deciding them. With
   * `socket` omitted, `socket` (used by `cli`) should match what the env says.
   */
  omitDefaults?: ("http-port" | "https-port" | "bind" | "socket")[];
  /** Runs `run` with this executable (a copy of bun or of the binary) instead of the usual one. */
  executable?: string;
}

/** One service as `list --json` prints it. */
export interface ListedService {
  name: string;
  hosts: string[];
  pathPrefixes: string[];
  tls: boolean;
  state: string;
  targets: { address: string; state: string }[];
}

export class Proxy {
  readonly logs: Record<string, unknown>[] = [];
  readonly rawOutput: string[] = [];
  httpPort = 0;
  private waiters: { predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  private proc!: Subprocess;
  exited!: Promise<number>;
  /** The process serving now: after `parachute upgrade`, the successor (from its `Server started` line). */
  serverPid = 0;
  private following: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly stateDir: string,
    readonly socket: string,
    private readonly options: ProxyOptions,
  ) {}

  static async start(options: ProxyOptions = {}): Promise<Proxy> {
    const dir = options.stateDir ?? tempDir();
    const socket = options.socket ?? path.join(dir, "admin.sock");
    const proxy = new Proxy(dir, socket, options);
    await proxy.spawn();
    return proxy;
  }

  /** Starts (or restarts) the server process and waits for `Server started`. */
  async spawn(): Promise<void> {
    this.httpPort = 0;
    // Only a `Server started` from this process counts, not one from before a restart.
    const since = this.logs.length;
    const omit = new Set(this.options.omitDefaults ?? []);
    const defaults: string[] = [];
    for (const [flag, value] of [["http-port", "0"], ["https-port", "0"], ["bind", "127.0.0.1"]] as const) {
      if (!omit.has(flag)) defaults.push(`--${flag}`, value);
    }
    // The server writes to a file that is polled, not to a pipe: a pipe
    // reader in the test process was seen to stall until some other socket
    // event, which made log-line waits flaky.
    const outputFile = path.join(tempDir("parachute-output-"), "output.log");
    const output = fs.openSync(outputFile, "w");
    const command = parachuteCommand();
    if (this.options.executable) command[0] = this.options.executable;
    this.proc = Bun.spawn(
      [
        ...command,
        "run",
        ...defaults,
        "--state-dir",
        this.stateDir,
        ...(omit.has("socket") ? [] : ["--socket", this.socket]),
        ...(this.options.args ?? []),
      ],
      { env: { ...process.env, NO_COLOR: "1", ...this.options.env }, stdout: output, stderr: output, stdin: "ignore" },
    );
    fs.closeSync(output);
    this.exited = this.proc.exited;
    this.follow(outputFile);
    const started = await Promise.race([
      this.waitForLog((l) => l.msg === "Server started", 15_000, since),
      this.exited.then((code) => {
        throw new Error(`parachute exited with ${code} before starting:\n${this.rawOutput.join("")}`);
      }),
    ]);
    this.httpPort = Number(started.http_port);
  }

  /** Reads the server's output file as it grows, until the process has exited. */
  private follow(file: string) {
    const fd = fs.openSync(file, "r");
    const chunk = Buffer.alloc(64 * 1024);
    let offset = 0;
    const consume = this.consumer();
    const read = () => {
      for (;;) {
        const n = fs.readSync(fd, chunk, 0, chunk.length, offset);
        if (n <= 0) return;
        offset += n;
        consume(chunk.subarray(0, n));
      }
    };
    const timer = setInterval(read, 10);
    this.following = timer;
    // A successor writes to the same file: reading goes on until `stop()`.
    void this.exited.then(() => {
      read();
      if (this.serverPid !== this.proc.pid) return;
      clearInterval(timer);
      fs.closeSync(fd);
    });
  }

  private consumer() {
    const decoder = new TextDecoder();
    let buffered = "";
    return (bytes: Uint8Array) => {
      const text = decoder.decode(bytes, { stream: true });
      this.rawOutput.push(text);
      buffered += text;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        let json: Record<string, unknown>;
        try {
          json = JSON.parse(line);
        } catch {
          continue;
        }
        this.logs.push(json);
        if (json.msg === "Server started" && typeof json.pid === "number") this.serverPid = json.pid;
        this.waiters = this.waiters.filter((w) => {
          // A predicate that throws on some other line must not stop the pump.
          let matches = false;
          try {
            matches = w.predicate(json);
          } catch {}
          if (!matches) return true;
          w.resolve(json);
          return false;
        });
      }
    };
  }

  /**
   * Resolves with the first log line (already logged or future) matching the
   * predicate; `since` skips the lines logged before that index (see `logMark`).
   */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000, since = 0): Promise<Record<string, unknown>> {
    const seen = this.logs.slice(since).find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (line: Record<string, unknown>) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no matching log line within ${timeoutMs}ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** The current position in the log, for `waitForLog(…, since)`. */
  logMark(): number {
    return this.logs.length;
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** The latest pid of each worker (by its number), from the "Worker started" lines. */
  workerPids(): Map<unknown, number> {
    const workers = new Map<unknown, number>();
    for (const line of this.logs) if (line.msg === "Worker started") workers.set(line.worker, Number(line.pid));
    return workers;
  }

  /** The server's processes still running: the one started, and its workers. */
  processIds(): number[] {
    return [this.proc.pid, ...this.workerPids().values()].filter(processAlive);
  }

  /** The exit code once the server process has exited, else null. */
  get exitCode(): number | null {
    return this.proc.exitCode;
  }

  /** Everything the server printed so far (stdout and stderr), as text. */
  get output(): string {
    return this.rawOutput.join("");
  }

  /** Path of the state file in this server's state directory. */
  get stateFile(): string {
    return path.join(this.stateDir, "parachute.state");
  }

  url(pathAndQuery = "/"): string {
    return `http://127.0.0.1:${this.httpPort}${pathAndQuery}`;
  }

  /** fetch through the proxy with a given Host header. */
  fetch(pathAndQuery: string, init: RequestInit & { host?: string } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (init.host) headers.set("host", init.host);
    return fetch(this.url(pathAndQuery), { redirect: "manual", ...init, headers });
  }

  /** Runs a client command against this server. */
  cli(args: string[], env: Record<string, string | undefined> = {}, options: RunCliOptions = {}): Promise<CliResult> {
    return runCli([...args, "--socket", this.socket], env, options);
  }

  /** `list --json`, parsed. */
  async listJson(): Promise<ListedService[]> {
    const result = await this.cli(["list", "--json"]);
    if (result.code !== 0) throw new Error(`list --json exited ${result.code}: ${result.stderr}`);
    return (JSON.parse(result.stdout) as { services: ListedService[] }).services;
  }

  kill(signal: NodeJS.Signals | number = "SIGTERM") {
    this.proc.kill(signal);
    return this.exited;
  }

  async stop() {
    if (this.proc.exitCode === null && !this.proc.killed) this.proc.kill("SIGKILL");
    await this.exited;
    if (this.serverPid && this.serverPid !== this.proc.pid) {
      const pid = this.serverPid;
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
      await waitFor(`upgraded server ${pid} to exit`, () => !processAlive(pid));
      clearInterval(this.following);
    }
  }
}
