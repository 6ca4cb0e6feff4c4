#!/usr/bin/env bun
// A backend whose answers take their time, for the SIGTERM drain check of
// scripts/container-check.sh: it runs in a container from the sample image,
// behind the proxy container, and the proxy is stopped while one of its
// requests is in flight.
//   GET /up          200 "OK" at once (parachute's health check)
//   GET /?ms=N       200 "slow done after N ms" after N ms (default 3000, at most 20000)
// Every slow request logs {"msg":"slow request","ms":N} when it arrives, so
// the check can wait for that line instead of sleeping. Listens on PORT
// (default 3000) on 0.0.0.0; exits 0 on SIGTERM.
const port = Number(process.env.PORT ?? "3000");

const server = Bun.serve({
  hostname: "0.0.0.0",
  port,
  development: false,
  idleTimeout: 60,
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === "/up") return new Response("OK");
    const ms = Math.min(Math.max(Number(url.searchParams.get("ms") ?? "3000") || 0, 0), 20_000);
    console.log(JSON.stringify({ msg: "slow request", ms, path: url.pathname }));
    await Bun.sleep(ms);
    return new Response(`slow done after ${ms} ms\n`, { headers: { "content-type": "text/plain" } });
  },
});

console.log(JSON.stringify({ msg: "listening", port: server.port }));
process.on("SIGTERM", () => process.exit(0));
