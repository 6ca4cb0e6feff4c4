// On-demand TLS at SaaS scale (docs/benchmarks.md "On-demand TLS at 1,000
// hosts"): one catch-all service with --tls-on-demand-url, and HOSTS names
// (default 1,000) that each get a certificate from a local pebble at their
// first handshake. Everything runs on 127.0.0.1 and is bounded: HOSTS first
// handshakes, then SAMPLES handshakes on hosts that have their certificate.
//
//   bun scripts/on-demand-scale.ts             # 1,000 hosts, one process
//   HOSTS=200 WORKERS=2 bun scripts/on-demand-scale.ts
//
// Reports (one JSON line, and a summary): the proxy's RSS (summed over its
// process tree) before the first handshake and after the last issuance, the
// time to issue every host, first-handshake latency (ask + queue + order +
// handshake), and handshake latency for hosts with a certificate, over
// HTTP/1.1 and HTTP/2 ALPN. pebble runs with PEBBLE_VA_ALWAYS_VALID=1 (no
// challenge is fetched) and PEBBLE_VA_NOSLEEP=1, so the figures are the
// proxy's and pebble's own work, not validation delays.
import * as tls from "node:tls";
import { memoryOf } from "../bench/memory.ts";
import { startPebble } from "../test/support/pebble.ts";
import { freePort, Proxy } from "../test/support/proxy.ts";

const HOSTS = Number(process.env.HOSTS ?? 1000);
/** `run --workers`: 1 is one process; more is a control plane (which orders) and that many workers (which ask it). */
const WORKERS = Number(process.env.WORKERS ?? 1);
/** First handshakes in flight at once (clients arriving together). */
const CLIENTS = Number(process.env.CLIENTS ?? 50);
const SAMPLES = Number(process.env.SAMPLES ?? 2000);
/** The whole run must end within this (a stuck issuance fails it rather than hanging). */
const DEADLINE_MS = Number(process.env.DEADLINE_MS ?? 600_000);
const CONCURRENCY = process.env.PARACHUTE_ACME_CONCURRENCY ?? "4";

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]! : NaN;
}

function summary(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 10) / 10;
  return { count: sorted.length, p50_ms: round(percentile(sorted, 50)), p99_ms: round(percentile(sorted, 99)), max_ms: round(sorted.at(-1) ?? NaN) };
}

/** One full handshake (no session reuse) for `servername`; its duration, and whether the certificate verified. */
function handshake(port: number, servername: string, ca: string, alpn: string): Promise<{ ms: number; authorized: boolean; error?: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca, ALPNProtocols: [alpn], rejectUnauthorized: false }, () => {
      resolve({ ms: performance.now() - started, authorized: socket.authorized });
      socket.destroy();
    });
    socket.setTimeout(60_000, () => socket.destroy(new Error("timed out")));
    socket.on("error", (error) => resolve({ ms: performance.now() - started, authorized: false, error: error.message }));
  });
}

const mb = (kb: number | undefined) => (kb === undefined ? NaN : Math.round(kb / 102.4) / 10);

async function main() {
  const deadline = setTimeout(() => {
    console.error(`on-demand-scale: not done within ${DEADLINE_MS / 1000}s`);
    process.exit(1);
  }, DEADLINE_MS);
  const app = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
  const httpPort = await freePort();
  const httpsPort = await freePort();
  const pebble = await startPebble(httpPort, { PEBBLE_VA_ALWAYS_VALID: "1", PEBBLE_VA_NOSLEEP: "1" });
  const proxy = await Proxy.start({
    args: ["--http-port", String(httpPort), "--https-port", String(httpsPort), "--workers", String(WORKERS)],
    env: {
      PARACHUTE_ACME_DIRECTORY: pebble.directory,
      PARACHUTE_ACME_CA: pebble.apiCaFile,
      PARACHUTE_ACME_CONCURRENCY: CONCURRENCY,
      // The rate limit is not what is measured here: every host may be asked at once.
      PARACHUTE_TLS_ON_DEMAND_RATE: String(HOSTS),
    },
  });
  try {
    const deployed = await proxy.cli(["deploy", "saas", "--target", `127.0.0.1:${app.port}`, "--tls", "--tls-on-demand-url", "/allow"]);
    if (deployed.code !== 0) throw new Error(`deploy failed: ${deployed.stderr}`);
    const ca = await pebble.rootPem();
    const hosts = Array.from({ length: HOSTS }, (_, i) => `customer-${i}.saas.test`);
    const before = memoryOf(proxy.pid);

    // First handshakes, CLIENTS at a time: each waits for its ask and its order.
    const first: number[] = [];
    const failures: string[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < hosts.length) {
          const host = hosts[next++]!;
          const result = await handshake(httpsPort, host, ca, "http/1.1");
          first.push(result.ms);
          if (!result.authorized) failures.push(`${host}: ${result.error ?? "not verified"}`);
        }
      }),
    );
    const issueAllMs = performance.now() - started;
    // Let replaced HTTP/2 servers finish their grace, then read the memory.
    await Bun.sleep(3_000);
    const after = memoryOf(proxy.pid);

    const served = { "http/1.1": [] as number[], h2: [] as number[] };
    let unverified = 0;
    for (let i = 0; i < SAMPLES; i++) {
      const alpn = i % 2 === 0 ? "http/1.1" : "h2";
      const result = await handshake(httpsPort, hosts[Math.floor(Math.random() * hosts.length)]!, ca, alpn);
      if (!result.authorized) unverified++;
      served[alpn as keyof typeof served].push(result.ms);
    }
    const afterSamples = memoryOf(proxy.pid);
    const issued = pebble.output().match(/Issued certificate serial/g)?.length ?? 0;
    const report = {
      hosts: HOSTS,
      workers: WORKERS,
      acme_concurrency: Number(CONCURRENCY),
      first_handshake_clients: CLIENTS,
      issued_by_pebble: issued,
      first_handshakes_unverified: failures.length,
      time_to_issue_all_s: Math.round(issueAllMs / 100) / 10,
      processes: before?.processes,
      rss_before_mb: mb(before?.rss_kb),
      rss_after_issuing_mb: mb(after?.rss_kb),
      rss_after_handshakes_mb: mb(afterSamples?.rss_kb),
      first_handshake: summary(first),
      handshake_with_cert_http1: summary(served["http/1.1"]),
      handshake_with_cert_h2: summary(served.h2),
      samples_unverified: unverified,
    };
    console.log(JSON.stringify(report));
    if (failures.length) console.error(`first handshakes without a verified certificate (${failures.length}), e.g.:\n${failures.slice(0, 5).join("\n")}`);
  } finally {
    clearTimeout(deadline);
    await proxy.stop();
    await pebble.stop();
    await app.stop(true);
  }
}

await main();
