// The anchor: after its first upgrade, the process that was started stays,
// small and idle, for as long as a parachute it started (or one started by
// one of those) serves. So whatever watches that first process sees one
// process for the whole life of the service: a container's PID 1,
// tini/`docker --init`, systemd's main PID, a shell job. It
//   - is the child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a server
//     whose parent exited after its own upgrade becomes its child;
//   - reaps every child that exits (no zombies after many upgrades);
//   - sends SIGTERM and SIGINT on to the server serving now, named by the
//     pid file (README "Upgrading parachute");
//   - exits with that server's exit status once it has ended.
import { dlopen, FFIType, ptr } from "bun:ffi";
import * as fs from "node:fs";
import { constants } from "node:os";
import { log } from "../log.ts";

const PR_SET_CHILD_SUBREAPER = 36;
const WNOHANG = 1;
/** How often exited children are collected. */
const REAP_EVERY_MS = 100;

function openLibc() {
  return dlopen("libc.so.6", {
    prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    waitpid: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
  }).symbols;
}

/** The status a shell would report: the exit code, or 128 + the signal's number. */
export function exitStatus(code: number | null, signal: string | number | null): number {
  if (code !== null) return code;
  const number = typeof signal === "number" ? signal : constants.signals[signal as keyof typeof constants.signals];
  return 128 + (number ?? 0);
}

/** The same from a raw waitpid(2) status word. */
function statusFromWait(word: number): number {
  const signal = word & 0x7f;
  return signal === 0 ? (word >> 8) & 0xff : 128 + signal;
}

/** The pid of the server serving now, as written by the servers themselves. */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Writes the serving server's pid (atomically: a reader never sees half a file). */
export function writePidFile(file: string, pid: number) {
  const partial = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(partial, `${pid}\n`);
  fs.renameSync(partial, file);
}

export interface AnchorOptions {
  pidFile: string;
  /** The successor this process started: Bun reaps it, so its exit comes from here. */
  successor: { pid: number; exited: Promise<number> };
}

/** Turns this process, whose server has handed over and drained, into the anchor. It never returns to serving. */
export function becomeAnchor({ pidFile, successor }: AnchorOptions) {
  const libc = openLibc();
  const subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) === 0;
  let current = successor.pid;
  const serving = () => (current = readPidFile(pidFile) ?? current);
  const exitAnchor = (pid: number, status: number) => {
    fs.rmSync(pidFile, { force: true });
    log.info("Anchor stopped", { pid: process.pid, server_pid: pid, exit_status: status });
    log.flush();
    process.exit(status);
  };
  const ended = (pid: number, status: number) => {
    if (pid === serving()) exitAnchor(pid, status);
  };

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => {
      const pid = serving();
      try {
        process.kill(pid, signal);
      } catch {
        // Already gone: its exit is collected below.
      }
    });
  }
  void successor.exited.then((status) => ended(successor.pid, status));
  const word = new Int32Array(1);
  // Without the subreaper (or PID 1), later servers are not its children, and it cannot see them end.
  const tracks = subreaper || process.pid === 1;
  setInterval(() => {
    for (;;) {
      const pid = libc.waitpid(-1, ptr(word), WNOHANG);
      if (pid === 0) return;
      if (pid < 0) {
        // No child left at all: whatever served has ended without its exit reaching this process.
        if (tracks) exitAnchor(current, 0);
        return;
      }
      ended(pid, statusFromWait(word[0]!));
    }
  }, REAP_EVERY_MS);
  log.info("Anchoring", { pid: process.pid, server_pid: serving(), subreaper });
  Bun.gc(true);
}
