// Logs are JSON lines on stdout. Lines are collected and written together a
// few milliseconds later: under load one write(2) carries hundreds of request
// lines instead of one each (that syscall was the largest single cost of a
// proxied request). Each line is whole: lines are never split across writes.

type Level = "debug" | "info" | "warn" | "error";
type Fields = Record<string, unknown>;

let debugEnabled = false;
let pending = "";
let scheduled = false;

/** How long a line may wait to be written. */
const FLUSH_DELAY_MS = 20;
/** Past this much pending text, it is written at once. */
const FLUSH_BYTES = 64 * 1024;

function flush() {
  scheduled = false;
  if (pending === "") return;
  const chunk = pending;
  pending = "";
  process.stdout.write(chunk);
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
  pending += `{"time":"${now()}","level":"${level}","msg":${JSON.stringify(msg)}${fieldsText ? "," : ""}${fieldsText}}\n`;
  if (pending.length > FLUSH_BYTES) return flush();
  if (!scheduled) {
    scheduled = true;
    setTimeout(flush, FLUSH_DELAY_MS);
  }
}

// Whatever is still queued goes out with the process.
process.on("exit", flush);

export const log = {
  setDebug(on: boolean) {
    debugEnabled = on;
  },
  debug: (msg: string, fields?: Fields) => emit("debug", msg, fields),
  info: (msg: string, fields?: Fields) => emit("info", msg, fields),
  warn: (msg: string, fields?: Fields) => emit("warn", msg, fields),
  error: (msg: string, fields?: Fields) => emit("error", msg, fields),
  /** An info line whose fields the caller has already written as JSON members. */
  infoLine: (msg: string, fieldsText: string) => write("info", msg, fieldsText),
  /** Writes everything queued now; used before exit. */
  flush,
};
