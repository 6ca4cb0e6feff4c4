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

export function tempDir(prefix = "parachute-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a parachute command to completion. */
export async function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const proc = Bun.spawn([...parachuteCommand(), ...args], {
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

export interface ProxyOptions {
  stateDir?: string;
  socket?: string;
  env?: Record<string, string | undefined>;
  args?: string[];
}

export class Proxy {
  readonly logs: Record<string, unknown>[] = [];
  readonly rawOutput: string[] = [];
  httpPort = 0;
  private waiters: { predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  private proc!: Subprocess<"ignore", "pipe", "pipe">;
  exited!: Promise<number>;

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
    this.proc = Bun.spawn(
      [
        ...parachuteCommand(),
        "run",
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--bind",
        "127.0.0.1",
        "--state-dir",
        this.stateDir,
        "--socket",
        this.socket,
        ...(this.options.args ?? []),
      ],
      { env: { ...process.env, NO_COLOR: "1", ...this.options.env }, stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    this.exited = this.proc.exited;
    void this.pump(this.proc.stdout);
    void this.pump(this.proc.stderr);
    const started = await Promise.race([
      this.waitForLog((l) => l.msg === "Server started", 15_000),
      this.exited.then((code) => {
        throw new Error(`parachute exited with ${code} before starting:\n${this.rawOutput.join("")}`);
      }),
    ]);
    this.httpPort = Number(started.http_port);
  }

  private async pump(stream: ReadableStream<Uint8Array>) {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
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
        this.waiters = this.waiters.filter((w) => {
          if (!w.predicate(json)) return true;
          w.resolve(json);
          return false;
        });
      }
    }
  }

  /** Resolves with the first log line (already logged or future) matching the predicate. */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const seen = this.logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs}ms`)), timeoutMs);
      this.waiters.push({
        predicate,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  get pid(): number {
    return this.proc.pid;
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
  cli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
    return runCli([...args, "--socket", this.socket], env);
  }

  kill(signal: NodeJS.Signals | number = "SIGTERM") {
    this.proc.kill(signal);
    return this.exited;
  }

  async stop() {
    if (this.proc.exitCode === null && !this.proc.killed) this.proc.kill("SIGKILL");
    await this.exited;
  }
}
