// Upgrading parachute itself without a gap (README "Upgrading parachute").
// The running server starts its successor from the same executable path and
// `run` arguments, and hands it the listening sockets themselves: their file
// descriptors become the child's fds 3 and 4. Both processes then accept from
// the same sockets, with one accept queue, so no connection is refused or
// reset while the old process lets go (a second listener sharing the port
// with SO_REUSEPORT would reset what is queued on it when it closes). The
// successor says it is ready over Bun's IPC channel; only then does the old
// process move the admin socket to it, stop accepting, and drain.
import * as v from "valibot";
import { jsonFromEnv, portSchema } from "../values.ts";
import { exitStatus } from "./anchor.ts";

/** The environment variable that carries the handover to the successor. */
export const HANDOVER_ENV = "PARACHUTE_HANDOVER";
/** Where an inherited listening socket sits in the successor (and in a worker). */
export const HTTP_FD = 3;
export const HTTPS_FD = 4;

// Captured at start-up: once the binary on disk is replaced, the path still
// names the new one, which is the point.
export const LAUNCH = {
  executable: process.execPath,
  // A compiled binary's argv[1] is its embedded entry point; from source it is the script.
  args: process.argv[1]?.startsWith("/$bunfs/") ? process.argv.slice(2) : process.argv.slice(1),
};

const fdSchema = v.pipe(v.number(), v.integer(), v.minValue(3));
const HandoverSchema = v.object({
  /** The predecessor's process id. */
  from: v.pipe(v.number(), v.integer()),
  httpPort: portSchema,
  httpsPort: portSchema,
  metricsPort: portSchema,
  /** Absent when the predecessor had no status page (or predates it). */
  statusPort: v.optional(portSchema, 0),
  httpFd: v.optional(fdSchema),
  httpsFd: v.optional(fdSchema),
});
export type Handover = v.InferOutput<typeof HandoverSchema>;

export class HandoverError extends Error {}

/** The handover this process was started with, if it is a successor. */
export function inheritedHandover(env: Record<string, string | undefined> = process.env): Handover | undefined {
  return jsonFromEnv(HandoverSchema, HANDOVER_ENV, env);
}

/**
 * The private path a server first opens its admin socket on. It is then
 * renamed to the shared path (at start-up, or by the predecessor at a
 * handover), so the path clients use always leads to a listening server; and
 * Bun, which unlinks a unix socket's path when its server stops, then unlinks
 * this name, never the shared one.
 */
export function privateSocketPath(socket: string, pid = process.pid): string {
  return `${socket}.${pid}`;
}

/** What the successor tells its predecessor once it serves. */
type ReadyMessage = { type: "ready"; socket: string };

/** Sent by a successor over the IPC channel, once it serves on the inherited sockets. */
export function announceReady(socket: string) {
  const message: ReadyMessage = { type: "ready", socket };
  process.send?.(message);
}

export interface Listening {
  httpPort: number;
  httpsPort: number;
  metricsPort: number;
  statusPort: number;
  httpFd: number | undefined;
  httpsFd: number | undefined;
}

export interface Successor {
  readonly pid: number;
  /** Resolves with the successor's private admin socket once it serves; rejects with the reason it will not. */
  readonly ready: Promise<string>;
  /** Resolves with its exit status (128 + the signal's number when killed), whenever it exits. */
  readonly exited: Promise<number>;
  kill(): void;
}

/** Starts the successor with the listening sockets; `ready` settles within `timeoutMs`. */
export function startSuccessor(listening: Listening, timeoutMs: number): Successor {
  const handover: Handover = {
    from: process.pid,
    httpPort: listening.httpPort,
    httpsPort: listening.httpsPort,
    metricsPort: listening.metricsPort,
    statusPort: listening.statusPort,
    ...(listening.httpFd !== undefined ? { httpFd: HTTP_FD } : {}),
    ...(listening.httpsFd !== undefined ? { httpsFd: HTTPS_FD } : {}),
  };
  let settle!: { resolve: (socket: string) => void; reject: (error: Error) => void };
  const ready = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
  let exit!: (status: number) => void;
  const exited = new Promise<number>((resolve) => (exit = resolve));
  let child: ReturnType<typeof Bun.spawn>;
  try {
    child = Bun.spawn([LAUNCH.executable, ...LAUNCH.args], {
      env: { ...process.env, [HANDOVER_ENV]: JSON.stringify(handover) },
      stdio: ["ignore", "inherit", "inherit", listening.httpFd ?? "ignore", listening.httpsFd ?? "ignore"],
      serialization: "json",
      ipc(message: ReadyMessage) {
        if (message?.type === "ready" && typeof message.socket === "string") settle.resolve(message.socket);
      },
      onExit(_process, code, signal) {
        exit(exitStatus(code, signal));
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        settle.reject(new HandoverError(`the new parachute ${how} before it was ready (its log lines say why)`));
      },
    });
  } catch (error) {
    throw new HandoverError(`cannot start ${LAUNCH.executable}: ${(error as Error).message}`);
  }
  const timer = setTimeout(() => settle.reject(new HandoverError(`the new parachute was not ready within ${timeoutMs / 1000}s`)), timeoutMs);
  const done = () => clearTimeout(timer);
  void ready.then(done, done);
  return {
    pid: child.pid,
    ready,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
