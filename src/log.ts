// Logs are JSON lines on stdout (SPEC §10). Lines logged in the same task are
// written together, in a microtask: one write per task rather than per line.

type Level = "debug" | "info" | "warn" | "error";
type Fields = Record<string, unknown>;

let debugEnabled = false;
let pending = "";
let scheduled = false;

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
  pending += JSON.stringify({ time: now(), level, msg, ...fields }) + "\n";
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(flush);
  }
}

export const log = {
  setDebug(on: boolean) {
    debugEnabled = on;
  },
  debug: (msg: string, fields?: Fields) => emit("debug", msg, fields),
  info: (msg: string, fields?: Fields) => emit("info", msg, fields),
  warn: (msg: string, fields?: Fields) => emit("warn", msg, fields),
  error: (msg: string, fields?: Fields) => emit("error", msg, fields),
  /** Writes everything queued now; used before exit. */
  flush,
};
