// Built-in load client, used only when neither wrk nor bombardier is
// installed. Runs as its own process (bench/run.ts spawns it):
//   bun bench/client.ts URL CONNECTIONS DURATION_SECONDS
// Keeps CONNECTIONS requests in flight over keep-alive fetch for the given
// time and prints one JSON line with the totals and latency percentiles.
// It is much slower than wrk (the client itself is a Bun process competing
// for the same cores), so compare its numbers only with each other.
const [url, connArg, durArg] = process.argv.slice(2);
if (!url || !connArg || !durArg) {
  console.error("usage: bun bench/client.ts URL CONNECTIONS DURATION_SECONDS");
  process.exit(2);
}
const connections = Number(connArg);
const durationMs = Number(durArg) * 1000;
if (!(connections >= 1) || !(durationMs > 0)) {
  console.error("CONNECTIONS and DURATION_SECONDS must be positive numbers");
  process.exit(2);
}

const REQUEST_TIMEOUT_MS = 5000;
const latencies: number[] = [];
let errors = 0;
let non2xx = 0;
let bytes = 0;

const started = performance.now();
const deadline = started + durationMs;

async function worker() {
  while (performance.now() < deadline) {
    const t0 = performance.now();
    try {
      const res = await fetch(url!, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const body = await res.arrayBuffer();
      bytes += body.byteLength;
      if (res.status < 200 || res.status >= 400) non2xx++;
      latencies.push(performance.now() - t0);
    } catch {
      errors++;
    }
  }
}

await Promise.all(Array.from({ length: connections }, worker));
const elapsedS = (performance.now() - started) / 1000;

latencies.sort((a, b) => a - b);
const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]! : NaN);

console.log(
  JSON.stringify({
    requests: latencies.length,
    seconds: elapsedS,
    rps: latencies.length / elapsedS,
    p50_ms: pct(50),
    p75_ms: pct(75),
    p90_ms: pct(90),
    p99_ms: pct(99),
    max_ms: latencies.at(-1) ?? NaN,
    errors,
    non2xx,
    bytes,
  }),
);
