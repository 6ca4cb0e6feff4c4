#!/usr/bin/env bun
// Bounded load against a proxy while commands change its routing, for
// scripts/container-check.sh (the container counterpart of scripts/demo.ts).
//
//   bun scripts/container/load.ts URL STEADY [EXPECT -- COMMAND...]... 
//
// CLIENTS concurrent clients (half on keep-alive connections, half on a new
// connection per request) send GET URL in a loop. After STEADY answered
// requests, the first COMMAND runs (through sh -c); once it has exited 0,
// every request sent from then on must be answered by one of the instances in
// EXPECT (comma-separated, the sample app's "instance" in its JSON answer).
// After another STEADY requests the next step runs, and after the last one
// STEADY more requests end the run. Each step is given as two arguments:
// "EXPECT" "COMMAND".
//
// Bounded: at most MAX_SECONDS (env LOAD_MAX_SECONDS, default 120) in all and
// 10 s per request. It prints a summary and exits 0 only if every request got
// a 200 from an allowed instance and every command exited 0.
const CLIENTS = 4;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_SECONDS = Number(process.env.LOAD_MAX_SECONDS ?? "120");

const [url, steadyText, ...rest] = process.argv.slice(2);
const steady = Number(steadyText);
if (!url || !Number.isInteger(steady) || steady < 1 || rest.length % 2 !== 0) {
  console.error("usage: bun scripts/container/load.ts URL STEADY [EXPECT COMMAND]...");
  process.exit(2);
}
const steps: { expect: Set<string>; command: string }[] = [];
for (let i = 0; i < rest.length; i += 2) {
  steps.push({ expect: new Set(rest[i]!.split(",")), command: rest[i + 1]! });
}

let allowed: Set<string> | undefined; // undefined: any instance may answer (before the first step)
let answered = 0;
let failures = 0;
let misrouted = 0;
const samples: string[] = [];
const servedBy = new Map<string, number>();
let running = true;
const sample = (text: string) => {
  if (samples.length < 8) samples.push(text);
};

async function client(keepAlive: boolean) {
  while (running) {
    const mustBe = allowed; // the rule in force when the request was sent
    try {
      const res = await fetch(url!, { keepalive: keepAlive, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const body = await res.text();
      answered++;
      if (res.status !== 200) {
        failures++;
        sample(`HTTP ${res.status}: ${body.slice(0, 120).replace(/\s+/g, " ")}`);
        continue;
      }
      const instance = String((JSON.parse(body) as { instance?: unknown }).instance);
      servedBy.set(instance, (servedBy.get(instance) ?? 0) + 1);
      if (mustBe && !mustBe.has(instance)) {
        misrouted++;
        sample(`${instance} answered a request sent after the switch to ${[...mustBe].join(",")}`);
      }
    } catch (error) {
      answered++;
      failures++;
      sample(`request failed: ${(error as Error).message}`);
    }
  }
}

/** Resolves once `count` more requests have been answered (or failed). */
async function requests(count: number) {
  const until = answered + count;
  while (answered < until && running) await Bun.sleep(5);
}

const deadline = setTimeout(() => {
  console.error(`load: not done after ${MAX_SECONDS} s, giving up`);
  process.exit(1);
}, MAX_SECONDS * 1000);

const started = performance.now();
const clients = Array.from({ length: CLIENTS }, (_, i) => client(i % 2 === 0));
let commandsFailed = 0;
await requests(steady);
for (const step of steps) {
  const t0 = performance.now();
  const proc = Bun.spawn(["sh", "-c", step.command], { stdin: "ignore", stdout: "inherit", stderr: "inherit" });
  const code = await proc.exited;
  console.log(`load: \`${step.command}\` exited ${code} after ${Math.round(performance.now() - t0)} ms, at request ${answered}`);
  if (code !== 0) commandsFailed++;
  allowed = step.expect;
  await requests(steady);
}
running = false;
await Promise.all(clients);
clearTimeout(deadline);

const seconds = (performance.now() - started) / 1000;
const counts = [...servedBy.entries()].sort().map(([name, n]) => `${name} ${n}`).join(", ") || "none";
console.log(`load: ${answered} requests in ${seconds.toFixed(1)} s, ${failures} failed, ${misrouted} from an old instance after the switch; served by ${counts}`);
for (const line of samples) console.log(`load:   ! ${line}`);
process.exit(failures === 0 && misrouted === 0 && commandsFailed === 0 ? 0 : 1);
