// Runs parachute (src/main.ts, same argv) under the inspector's CPU profiler,
// for BENCH_PROFILE=1. SIGUSR2 starts the profiler; the next SIGUSR2 stops it
// and writes BENCH_PROFILE_OUT.cpuprofile (Chrome DevTools / speedscope) and
// BENCH_PROFILE_OUT.md (self time by function and by file), so only the
// measured seconds are profiled.
// (`bun --cpu-prof` writes nothing for `parachute run` with Bun 1.4.5 and can
// die of SIGPWR at startup, hence this wrapper.)
import * as fs from "node:fs";
import { Session } from "node:inspector";
import * as path from "node:path";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

const out = process.env.BENCH_PROFILE_OUT;
if (!out) throw new Error("BENCH_PROFILE_OUT is not set");
const root = path.resolve(import.meta.dir, "..");

const session = new Session();
session.connect();
const post = <T = unknown>(method: string, params?: object) =>
  new Promise<T>((resolve, reject) =>
    // The overloads of Session.post are per method; this wrapper is generic.
    (session.post as (m: string, p: object | undefined, cb: (e: Error | null, r: T) => void) => void)(method, params, (e, r) => (e ? reject(e) : resolve(r))),
  );
await post("Profiler.enable");

let running = false;
process.on("SIGUSR2", () => {
  void (async () => {
    if (!running) {
      running = true;
      await post("Profiler.start");
      return;
    }
    running = false;
    const { profile } = await post<{ profile: Profile }>("Profiler.stop");
    fs.writeFileSync(`${out}.cpuprofile`, JSON.stringify(profile));
    fs.writeFileSync(`${out}.md.tmp`, summarize(profile));
    fs.renameSync(`${out}.md.tmp`, `${out}.md`); // the bench waits for this file
  })();
});

function shortUrl(url: string): string {
  if (!url) return "(native)";
  const file = url.replace(/^file:\/\//, "");
  return file.startsWith(root) ? path.relative(root, file) : file;
}

/** Native work with no JS frame on the stack (Bun.serve and fetch internals, GC, idle) shows up as a nameless child of the root. */
const NO_JS = "(no JS frame: native I/O, GC, idle)";

function functionKey(node: ProfileNode, parentOf: Map<number, number>): string {
  const f = node.callFrame;
  if (!f.url && !f.functionName && parentOf.get(node.id) === profileRootId) return NO_JS;
  const name = f.functionName || "(anonymous)";
  return f.url ? `${name} — ${shortUrl(f.url)}:${f.lineNumber + 1}` : `${name} — (native)`;
}
let profileRootId = -1;

function summarize(profile: Profile): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
  profileRootId = profile.nodes.find((n) => !parentOf.has(n.id))?.id ?? -1;
  const selfTime = new Map<number, number>(); // node id → µs
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i + 1] is the time until the next sample: the time this sample stands for.
    const dt = deltas[i + 1] ?? deltas[i] ?? 0;
    selfTime.set(samples[i]!, (selfTime.get(samples[i]!) ?? 0) + Math.max(0, dt));
  }
  const total = [...selfTime.values()].reduce((a, b) => a + b, 0) || 1;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  const inclusive = new Map<string, number>(); // functions of src/ with everything they call
  for (const [id, us] of selfTime) {
    const node = byId.get(id)!;
    const f = node.callFrame;
    const key = functionKey(node, parentOf);
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    const file = key === NO_JS ? NO_JS : f.url ? shortUrl(f.url).replace(/^.*node_modules\/([^/]+)\/.*$/, "node_modules/$1") : "(native, called from JS)";
    byFile.set(file, (byFile.get(file) ?? 0) + us);
    const seen = new Set<string>();
    for (let x: number | undefined = id; x !== undefined; x = parentOf.get(x)) {
      const n = byId.get(x)!;
      if (!shortUrl(n.callFrame.url).startsWith("src/")) continue;
      const k = functionKey(n, parentOf);
      if (seen.has(k)) continue; // recursion
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  const table = (rows: Map<string, number>, limit: number) =>
    [...rows.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([k, us]) => `| ${((us / total) * 100).toFixed(1)}% | ${(us / 1000).toFixed(0)} ms | ${k.replaceAll("|", "\\|")} |`)
      .join("\n");
  return `# parachute CPU profile (self time, main JS thread)

Sampled ${samples.length} times over ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s.
"${NO_JS}" is time with no JS on the main thread's stack: Bun.serve and fetch internals, GC, or waiting.
Native functions called from JS (fetch, Headers, JSON.stringify…) are counted where they were called.

## By file (or package)

| self | time | file |
|---:|---:|---|
${table(byFile, 25)}

## By function (self time)

| self | time | function — location |
|---:|---:|---|
${table(byFunction, 40)}

## parachute's own functions, including what they call

| total | time | function — location |
|---:|---:|---|
${table(inclusive, 30)}
`;
}

await import("../src/main.ts");
