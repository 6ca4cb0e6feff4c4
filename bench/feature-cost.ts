// What the status page and the verify window cost on request throughput
// (README "Status page", "Automatic rollback"). One parachute (`--workers 1`,
// `--status-port` on) in front of bench/backend.ts, measured with wrk in
// interleaved rounds:
//   idle     the status port is open and nobody looks at it
//   watched  a client holds /events open (the page's live feed)
//   window   a deploy's --verify-window is counting every answer
// Traffic goes to 127.0.0.1 only; every run is bounded (BENCH_ROUNDS rounds
// of BENCH_DURATION seconds per case). Prints the medians and ratios to idle.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const root = path.join(import.meta.dir, "..");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-feature-cost-"));
const socket = path.join(dir, "admin.sock");
const cli = (args: string[]) => Bun.spawn(["bun", path.join(root, "src/main.ts"), ...args, "--socket", socket], { stdout: "pipe", stderr: "pipe" });

/** Reads a child's stdout until `match` finds what it waits for. */
async function firstLine<T>(stream: ReadableStream<Uint8Array>, match: (line: string) => T | undefined): Promise<T> {
  let text = "";
  for await (const chunk of stream) {
    text += new TextDecoder().decode(chunk);
    for (const line of text.split("\n")) {
      const found = match(line);
      if (found !== undefined) return found;
    }
  }
  throw new Error("stream ended first");
}

const json = (line: string) => {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
};

/** A port that was free a moment ago (the status port must be given: 0 turns it off). */
function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

const backend = Bun.spawn(["bun", path.join(root, "bench/backend.ts")], { stdout: "pipe" });
const backendPort = await firstLine(backend.stdout, (l) => json(l)?.port as number | undefined);
const server = Bun.spawn(
  ["bun", path.join(root, "src/main.ts"), "run", "--http-port", "0", "--https-port", "0", "--bind", "127.0.0.1", "--workers", "1", "--status-port", String(freePort()), "--state-dir", path.join(dir, "state"), "--socket", socket],
  { stdout: "pipe", stderr: "ignore" },
);
const started = await firstLine(server.stdout, (l) => {
  const line = json(l);
  return line?.msg === "Server started" ? line : undefined;
});
const httpPort = Number(started.http_port);
const statusPort = Number(started.status_port);
// Request logs are read and dropped, as a log shipper would.
void (async () => {
  for await (const _ of server.stdout) {
  }
})();

async function deploy(target: string, extra: string[] = []) {
  const proc = cli(["deploy", "bench", "--target", target, ...extra]);
  if ((await proc.exited) !== 0) throw new Error(`deploy failed: ${await new Response(proc.stderr).text()}`);
}

// Two names of the same backend are two targets: each window deploys the other one.
const targets = [`127.0.0.1:${backendPort}`, `localhost:${backendPort}`];
let current = 0;
await deploy(targets[0]!);

async function wrk(): Promise<number> {
  const proc = Bun.spawn(["wrk", "-t1", "-c50", `-d${DURATION}s`, `http://127.0.0.1:${httpPort}/small`], { stdout: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rate) throw new Error(`wrk printed no rate:\n${out}`);
  return Number(rate[1]);
}

const cases: Record<string, () => Promise<number>> = {
  idle: wrk,
  watched: async () => {
    const events = await fetch(`http://127.0.0.1:${statusPort}/events`);
    const reader = events.body!.getReader();
    void (async () => {
      while (!(await reader.read().catch(() => ({ done: true }))).done) {}
    })();
    try {
      return await wrk();
    } finally {
      await reader.cancel();
    }
  },
  window: async () => {
    current = 1 - current;
    const proc = cli(["deploy", "bench", "--target", targets[current]!, "--verify-window", `${DURATION + 3}s`, "--verify-min-requests", "1"]);
    await firstLine(proc.stderr, (l) => (l.startsWith("Verifying") ? true : undefined));
    const rate = await wrk();
    if ((await proc.exited) !== 0) throw new Error("the verified deploy failed");
    return rate;
  },
};

const results: Record<string, number[]> = { idle: [], watched: [], window: [] };
await wrk(); // warmup
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of Object.entries(cases)) {
    const rate = await run();
    results[name]!.push(rate);
    console.log(`round ${round + 1}/${ROUNDS} ${name.padEnd(8)} ${Math.round(rate)} req/s`);
  }
}
server.kill("SIGTERM");
backend.kill("SIGTERM");
await Promise.all([server.exited, backend.exited]);
fs.rmSync(dir, { recursive: true, force: true });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const idle = median(results.idle!);
console.log(`\n| case | req/s (median of ${ROUNDS}) | vs idle |\n|---|--:|--:|`);
for (const [name, xs] of Object.entries(results)) console.log(`| ${name} | ${Math.round(median(xs)).toLocaleString("en")} | ${(median(xs) / idle).toFixed(2)}× |`);
