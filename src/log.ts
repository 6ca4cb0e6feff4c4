// Logs are JSON lines on stdout. Lines are collected and written together a
// few milliseconds later: under load one write(2) carries many request lines
// instead of one each (that syscall was the largest single cost of a proxied
// request). Several processes share stdout (workers, and both servers during
// an upgrade), so each write is at most PIPE_BUF (4 KiB) bytes of whole lines:
// POSIX makes such a write to a pipe atomic, all of it or nothing (EAGAIN, as
// Bun makes stdout non-blocking), so lines never interleave mid-line.
import * as fs from "node:fs";

type Level = "debug" | "info" | "warn" | "error";
type Fields = Record<string, unknown>;

let debugEnabled = false;
/** Fields every line of this process carries (a worker's number), as JSON members with a leading comma. */
let processFields = "";
let pending = "";
let scheduled = false;

/** How long a line may wait to be written. */
const FLUSH_DELAY_MS = 20;
/** Past this much pending text, it is written at once. */
const FLUSH_BYTES = 64 * 1024;
/** The most one write(2) carries: PIPE_BUF on Linux. */
const ATOMIC_BYTES = 4096;
/** How soon a write the pipe refused (full) is tried again. */
const RETRY_MS = 5;

/** The next piece to write: whole lines, at most ATOMIC_BYTES unless one line alone is longer. */
export function nextPiece(text: string): string {
  if (Buffer.byteLength(text) <= ATOMIC_BYTES) return text;
  let end = text.lastIndexOf("\n", ATOMIC_BYTES - 1);
  // Characters outside ASCII take more than one byte: step back to a line that fits.
  while (end > 0 && Buffer.byteLength(text.slice(0, end + 1)) > ATOMIC_BYTES) end = text.lastIndexOf("\n", end - 1);
  if (end < 0) end = text.indexOf("\n");
  return end < 0 ? text : text.slice(0, end + 1);
}

/** Writes what it can now; returns false when the pipe is full (the rest stays pending). */
function writeOut(): boolean {
  while (pending !== "") {
    const piece = nextPiece(pending);
    const bytes = Buffer.from(piece);
    let written: number;
    try {
      written = fs.writeSync(1, bytes);
    } catch (error) {
      if ((error as { code?: string }).code === "EAGAIN") return false;
      pending = ""; // stdout is gone (EPIPE): nothing can be logged any more
      return true;
    }
    // Only a line longer than PIPE_BUF can be written in part.
    pending = written === bytes.length ? pending.slice(piece.length) : bytes.subarray(written).toString() + pending.slice(piece.length);
  }
  return true;
}

function flush() {
  scheduled = false;
  if (writeOut()) return;
  scheduled = true;
  setTimeout(flush, RETRY_MS);
}

/** At exit nothing can wait for a timer: retries until written, for a bounded time. */
function flushNow() {
  const deadline = Date.now() + 2_000;
  while (!writeOut() && Date.now() < deadline) Bun.sleepSync(1);
}

// Formatting a date is a measurable part of a request's cost under load;
// lines within the same millisecond share one string.
let lastMs = 0;
let lastIso = "";
function now(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

function emit(level: Level, msg: string, fields?: Fields) {
  if (level === "debug" && !debugEnabled) return;
  // The fixed fields first, then the caller's, without copying the caller's object.
  const rest = fields ? JSON.stringify(fields) : "{}";
  write(level, msg, rest.slice(1, -1));
}

/** Queues one line; `fieldsText` is the caller's fields as JSON members (`"a":1,"b":"x"`), or "". */
function write(level: Level, msg: string, fieldsText: string) {
  pending += `{"time":"${now()}","level":"${level}","msg":${JSON.stringify(msg)}${fieldsText ? "," : ""}${fieldsText}${processFields}}\n`;
  if (pending.length > FLUSH_BYTES) return flush();
  if (!scheduled) {
    scheduled = true;
    setTimeout(flush, FLUSH_DELAY_MS);
  }
}

// Whatever is still queued goes out with the process.
process.on("exit", flushNow);

export const log = {
  setDebug(on: boolean) {
    debugEnabled = on;
  },
  /** Adds these fields to every line this process writes from now on. */
  setProcessFields(fields: Record<string, unknown>) {
    processFields = "," + JSON.stringify(fields).slice(1, -1);
  },
  debug: (msg: string, fields?: Fields) => emit("debug", msg, fields),
  info: (msg: string, fields?: Fields) => emit("info", msg, fields),
  warn: (msg: string, fields?: Fields) => emit("warn", msg, fields),
  error: (msg: string, fields?: Fields) => emit("error", msg, fields),
  /** An info line whose fields the caller has already written as JSON members. */
  infoLine: (msg: string, fieldsText: string) => write("info", msg, fieldsText),
  /** Writes everything queued now; used before exit. */
  flush: flushNow,
};

/**
 * A stray error in one request or command must not take every service down
 * with it: it is logged, and the process keeps serving.
 */
export function surviveStrayErrors() {
  const survive = (kind: string) => (error: unknown) => log.error("Unhandled error", { kind, error: (error as Error)?.message ?? String(error) });
  process.on("unhandledRejection", survive("rejection"));
  process.on("uncaughtException", survive("exception"));
}
