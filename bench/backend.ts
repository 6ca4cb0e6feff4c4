// The benchmark's fallback upstream when nginx is not installed (or
// BENCH_BACKEND=bun): a minimal Bun.serve on 127.0.0.1 answering what the nginx
// backend answers (bench/nginx.ts). Run as its own process (bench/run.ts
// spawns it) so it never shares an event loop with the load generator or the
// orchestrator. It prints one JSON line, {"port":N}, once it listens.
//   GET /big  → 200, 1 MiB (application/octet-stream)
//   anything else (/small, /up) → 200 "ok\n"
import { BIG_BODY_BYTES, SMALL_BODY } from "./bodies.ts";

const BIG = new Uint8Array(BIG_BODY_BYTES).fill(0x61);

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.BENCH_BACKEND_PORT ?? 0),
  development: false,
  fetch(req) {
    // Compare the raw URL's path without building a URL object: the backend
    // must stay as cheap as possible so it is never the bottleneck.
    const url = req.url;
    const start = url.indexOf("/", url.indexOf("//") + 2);
    if (url.startsWith("/big", start) && (url.length === start + 4 || url[start + 4] === "?")) {
      return new Response(BIG, { headers: { "content-type": "application/octet-stream" } });
    }
    return new Response(SMALL_BODY, { headers: { "content-type": "text/plain" } });
  },
});

console.log(JSON.stringify({ port: server.port }));

const stop = () => {
  void server.stop(true);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
