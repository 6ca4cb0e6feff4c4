#!/usr/bin/env bun
// The sample app to put behind parachute (`make demo`, docker-compose.yml).
// No dependencies: a plain Bun.serve that answers
//   GET /up      200 "OK" (parachute's default health check path)
//   GET /        a small HTML page saying which instance served the request
//   GET /whoami  the same as JSON
// Environment:
//   PORT      port to listen on (default 3000; 0 picks a free port)
//   BIND      address to listen on (default 0.0.0.0, so it is reachable from
//             other containers)
//   INSTANCE  the name shown on the page (default: the host name)
// On SIGTERM/SIGINT it stops accepting, lets in-flight requests finish and
// exits 0. It prints one JSON line when it is listening:
//   {"msg":"listening","instance":"web-1","host":"0.0.0.0","port":3000}
import * as os from "node:os";

function envPort(): number {
  const raw = process.env.PORT ?? "3000";
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port > 65535) {
    console.error(`Error: invalid PORT "${raw}" (expected 0-65535)`);
    process.exit(1);
  }
  return port;
}

const hostname = os.hostname();
const instance = process.env.INSTANCE || hostname;
const bind = process.env.BIND || "0.0.0.0";
const startedAt = new Date();
let served = 0;

function whoami(req: Request, port: number) {
  return {
    instance,
    hostname,
    port,
    pid: process.pid,
    started_at: startedAt.toISOString(),
    served,
    method: req.method,
    path: new URL(req.url).pathname,
    host: req.headers.get("host"),
    forwarded_for: req.headers.get("x-forwarded-for"),
    request_id: req.headers.get("x-request-id"),
  };
}

const escape = (s: unknown) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

function page(info: ReturnType<typeof whoami>): string {
  const rows = Object.entries(info)
    .map(([key, value]) => `<tr><th>${escape(key)}</th><td>${escape(value)}</td></tr>`)
    .join("\n      ");
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>${escape(instance)}</title>
    <style>
      body { font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 40rem; color: #222; }
      h1 { font-size: 2.5rem; margin-bottom: .25rem; }
      th { text-align: left; padding-right: 1.5rem; color: #666; font-weight: normal; }
      td { font-family: ui-monospace, monospace; }
    </style>
  </head>
  <body>
    <h1>Served by ${escape(instance)}</h1>
    <p>Reload to see which instance answers next. JSON: <a href="/whoami">/whoami</a>.</p>
    <table>
      ${rows}
    </table>
  </body>
</html>
`;
}

const server = Bun.serve({
  hostname: bind,
  port: envPort(),
  development: false,
  fetch(req, srv): Response {
    const port = srv.port ?? 0;
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("Method Not Allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const headers = { "x-instance": instance, "cache-control": "no-store" };
    switch (url.pathname) {
      case "/up":
        return new Response("OK", { headers: { ...headers, "content-type": "text/plain; charset=utf-8" } });
      case "/":
        served++;
        return new Response(page(whoami(req, port)), { headers: { ...headers, "content-type": "text/html; charset=utf-8" } });
      case "/whoami":
        served++;
        return Response.json(whoami(req, port), { headers });
      default:
        return new Response("Not Found\n", { status: 404, headers: { ...headers, "content-type": "text/plain; charset=utf-8" } });
    }
  },
});

console.log(JSON.stringify({ msg: "listening", instance, host: bind, port: server.port }));

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(JSON.stringify({ msg: "stopping", instance, signal }));
  // Stop accepting; in-flight requests finish. Bounded so a stuck client cannot hold the exit.
  const force = setTimeout(() => server.stop(true), 10_000);
  await server.stop();
  clearTimeout(force);
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
