// Starting the benchmark's servers: the Bun backend and the minimal
// forwarders (each prints {"port":N} once listening), and parachute through
// its public CLI only (`parachute run`, its "Server started" log line, and
// `parachute deploy`), so that the benchmark works against any version.
import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT, type Settings } from "./settings.ts";
import { runToEnd, spawnChild, waitForFile, type Child } from "./procs.ts";

export interface Started {
  child: Child;
  port: number;
  command: string[];
  /** The environment it needs beyond the usual, for the report's command lines. */
  env: Record<string, string>;
  /** Its stdout and stderr. */
  logFile: string;
}

export function firstJsonLine<T>(text: string, match: (line: Record<string, unknown>) => boolean, pick: (line: Record<string, unknown>) => T): T | undefined {
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

/** A bench/*.ts server as its own Bun process; resolves once it printed its port. */
export async function startBunServer(name: string, script: string, dir: string, env: Record<string, string> = {}): Promise<Started> {
  const logFile = path.join(dir, `${name.replace(/\W+/g, "-")}.out`);
  const command = [process.execPath, path.join(import.meta.dir, script)];
  const fd = fs.openSync(logFile, "w");
  const child = spawnChild(name, command, { stdout: fd, stderr: fd, env: { NODE_ENV: "production", ...env } });
  fs.closeSync(fd);
  const port = await waitForFile(logFile, child, 10_000, (text) => firstJsonLine(text, (l) => typeof l.port === "number", (l) => l.port as number));
  return { child, port, command, env, logFile };
}

export function parachuteCommand(s: Settings, profile: boolean): string[] {
  if (s.parachuteBin) return [s.parachuteBin];
  // BENCH_PROFILE: the same program, wrapped by the inspector profiler.
  return [process.execPath, profile ? path.join(import.meta.dir, "profile-entry.ts") : path.join(ROOT, "src/main.ts")];
}

export interface Parachute extends Started {
  httpsPort: number;
  socket: string;
}

/**
 * `parachute run` on 127.0.0.1 with its own state directory and admin socket.
 * `httpsPort` 0 disables HTTPS. The ports come from its "Server started"
 * line; the spawned pid is the server's.
 */
export async function startParachute(
  s: Settings,
  o: { name: string; dir: string; httpsPort: number; profileOut?: string; /** default 1: the single-process figures */ workers?: number },
): Promise<Parachute> {
  const home = path.join(o.dir, o.name);
  fs.mkdirSync(home, { recursive: true });
  const socket = path.join(home, "admin.sock");
  const logFile = path.join(home, "parachute.log");
  const command = [
    ...parachuteCommand(s, o.profileOut !== undefined),
    "run",
    "--http-port",
    "0",
    "--https-port",
    String(o.httpsPort),
    "--bind",
    "127.0.0.1",
    "--state-dir",
    path.join(home, "state"),
    "--socket",
    socket,
    "--workers",
    String(o.workers ?? 1),
  ];
  // Request logs go to a file, the cheapest sink there is, so that reading
  // them never costs the benchmark CPU; a journald or pipe sink costs more.
  const fd = fs.openSync(logFile, "w");
  const env = o.profileOut ? { BENCH_PROFILE_OUT: o.profileOut } : {};
  const child = spawnChild(o.name, command, { stdout: fd, stderr: fd, cwd: home, env });
  fs.closeSync(fd);
  const ports = await waitForFile(logFile, child, 20_000, (text) =>
    firstJsonLine(
      text,
      (l) => l.msg === "Server started",
      (l) => ({ http: Number(l.http_port), https: Number(l.https_port ?? 0) }),
    ),
  );
  return { child, port: ports.http, httpsPort: ports.https || o.httpsPort, command, env: {}, logFile, socket };
}

/** `parachute deploy SERVICE --target … ARGS`; returns the command for the report. */
export async function deploy(s: Settings, socket: string, service: string, args: string[]): Promise<string[]> {
  const command = [...parachuteCommand(s, false), "deploy", service, ...args, "--socket", socket];
  const result = await runToEnd("parachute deploy", command, 45_000);
  if (result.code !== 0) throw new Error(`deploy failed (exit ${result.code}):\n${result.stderr}${result.stdout}`);
  return command;
}

/** The last lines of a server's output, request log lines left out. */
export function logTail(logFile: string): string {
  try {
    return fs
      .readFileSync(logFile, "utf8")
      .split("\n")
      .filter((l) => !l.includes('"msg":"Request"'))
      .slice(-20)
      .join("\n");
  } catch {
    return "";
  }
}
