// New TLS connections per second, as its own process (bench/run.ts spawns it):
//   bun bench/handshake-client.ts PORT SERVER_NAME PATH CONNECTIONS SECONDS
// CONNECTIONS loops each open a fresh TLS connection to 127.0.0.1:PORT with
// SNI = SERVER_NAME, send one GET PATH with "Connection: close", read the
// whole response and close, until SECONDS have passed. No session resumption,
// so every connection is a full handshake. Prints one JSON line with the
// totals and the latency (connect to last byte) percentiles.
//
// Why not wrk -H "Connection: close": wrk reconnects only when the response
// says "Connection: close", and Bun.serve (1.4.5) closes without saying so;
// wrk then writes its next request into the closed socket and counts a read
// error per connection, which slows it far below the server's rate.
// Why not h2load --h1: it does not reconnect after a close at all.
import { closingRequest, parseResponse } from "./http1-response.ts";

const [portArg, serverName, path, connArg, durArg] = process.argv.slice(2);
const port = Number(portArg);
const connections = Number(connArg);
const durationMs = Number(durArg) * 1000;
if (!serverName || !path || !(port > 0) || !(connections >= 1) || !(durationMs > 0)) {
  console.error("usage: bun bench/handshake-client.ts PORT SERVER_NAME PATH CONNECTIONS SECONDS");
  process.exit(2);
}

const CONNECTION_TIMEOUT_MS = 5000;
const request = closingRequest(serverName, path);
const latencies: number[] = [];
let errors = 0;
let non2xx = 0;

/** One connection: resolves when it is closed, whatever happened. */
function once(): Promise<void> {
  const t0 = performance.now();
  let received = Buffer.alloc(0);
  let counted = false;
  const finish = (ok: boolean) => {
    if (counted) return;
    counted = true;
    if (!ok) {
      errors++;
      return;
    }
    latencies.push(performance.now() - t0);
    const status = parseResponse(received)?.status ?? 0;
    if (status < 200 || status >= 400) non2xx++;
  };
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      finish(false);
      resolve();
    }, CONNECTION_TIMEOUT_MS);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      tls: { serverName, rejectUnauthorized: false },
      socket: {
        open(socket) {
          socket.write(request);
        },
        data(socket, chunk) {
          received = Buffer.concat([received, chunk]);
          if (parseResponse(received)?.complete) {
            finish(true);
            socket.end();
          }
        },
        // A response without a length ends with the connection.
        close() {
          finish(parseResponse(received) !== undefined);
          done();
        },
        error() {
          finish(false);
        },
        connectError() {
          finish(false);
          done();
        },
      },
    }).catch(() => {
      finish(false);
      done();
    });
  });
}

const started = performance.now();
const deadline = started + durationMs;
async function loop() {
  while (performance.now() < deadline) await once();
}
await Promise.all(Array.from({ length: connections }, loop));
const seconds = (performance.now() - started) / 1000;

latencies.sort((a, b) => a - b);
const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]! : NaN);
console.log(
  JSON.stringify({
    requests: latencies.length,
    seconds,
    rps: latencies.length / seconds,
    p50_ms: pct(50),
    p90_ms: pct(90),
    p99_ms: pct(99),
    errors,
    non2xx,
  }),
);
