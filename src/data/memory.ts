// Gives memory back. JavaScriptCore lets its heap grow well past what is
// live while allocation is brisk, and keeps it once traffic stops, so a
// proxy that served a burst would sit on that memory for good. The data
// plane counts what it handles:
// - under sustained traffic, a full collection every 10 s keeps the heap
//   near what is live;
// - when traffic stops, a full collection at once;
// - after 30 s of quiet, the heap is also shrunk (Bun.shrink), which drops
//   compiled code: doing that under traffic made the JIT recompile hundreds
//   of functions every time (measured), so it waits for a real lull.
// (Measured: RSS after a benchmark's load 107 MB without this, about 80 MB
// with it; see the README's benchmarks.)

/** How often activity is looked at. */
const TICK_MS = 1_000;
/** Under sustained traffic, a full collection this often. */
const BUSY_COLLECT_MS = 10_000;
/** Quiet this long, and the heap is shrunk too. */
const SHRINK_AFTER_MS = 30_000;

let activity = 0;
let busySince = 0;
let quietSince = 0;
let timer: ReturnType<typeof setInterval> | undefined;

function tick() {
  const now = Date.now();
  if (activity > 0) {
    activity = 0;
    quietSince = 0;
    if (busySince === 0) busySince = now;
    else if (now - busySince >= BUSY_COLLECT_MS) {
      busySince = now;
      Bun.gc(true);
    }
    return;
  }
  if (quietSince === 0) {
    // Traffic just stopped.
    quietSince = now;
    busySince = 0;
    Bun.gc(true);
    return;
  }
  if (now - quietSince < SHRINK_AFTER_MS) return;
  Bun.gc(true);
  Bun.shrink();
  clearInterval(timer);
  timer = undefined;
  quietSince = 0;
}

/** Called for every request (and WebSocket) the data plane takes on. */
export function noteActivity() {
  activity++;
  if (!timer) {
    timer = setInterval(tick, TICK_MS);
    timer.unref?.();
  }
}
