// The benchmark's upstream: a minimal Bun.serve hello world on 127.0.0.1.
// Run as its own process (bench/run.ts spawns it) so it never shares an event
// loop with the load generator or the orchestrator. It prints one JSON line,
// {"port":N}, once it listens.
//   GET /up  → 200 "ok" (parachute's health check)
//   anything else → 200 "Hello, World!\n"
const BODY = "Hello, World!\n";

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.BENCH_BACKEND_PORT ?? 0),
  development: false,
  fetch(req) {
    // Compare the raw URL's path without building a URL object: the backend
    // must stay as cheap as possible so it is never the bottleneck.
    const url = req.url;
    const start = url.indexOf("/", url.indexOf("//") + 2);
    if (url.startsWith("/up", start) && (url.length === start + 3 || url[start + 3] === "?")) {
      return new Response("ok", { headers: { "content-type": "text/plain" } });
    }
    return new Response(BODY, { headers: { "content-type": "text/plain" } });
  },
});

console.log(JSON.stringify({ port: server.port }));

const stop = () => {
  void server.stop(true);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
