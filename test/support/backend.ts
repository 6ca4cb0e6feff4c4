// A real Bun.serve app to put behind the proxy in tests. It answers:
//   /up                 health check (status settable with setHealth)
//   /echo, anything     JSON: backend name, method, url, headers, body bytes
//   /slow?ms=N          waits N ms before answering (counts in-flight requests)
//   /status/N           answers status N with a small body
//   /gzip               a gzip-compressed body with Content-Encoding: gzip
//   /redirect           302 to /echo?from=redirect
//   /stream?chunks=N&interval=MS   a chunked body written over time
//   /bytes?n=N          N bytes of a repeating pattern with Content-Length
//   /cookies            three separate Set-Cookie headers
//   /hop                response carrying hop-by-hop headers
// With setFailureRate(f), a share f of the app's answers (not /up) are 500s,
// spread evenly (deterministic: 0.2 is every fifth), counted in `failed`.
import type { Server } from "bun";

export interface Backend {
  name: string;
  port: number;
  address: string; // 127.0.0.1:port, as a parachute target
  server: Server<unknown>;
  inflight: number;
  requests: number;
  /** Health checks (GET /up) answered, and the headers of the latest one. */
  healthChecks: number;
  lastHealthCheck?: Record<string, string>;
  /** Requests seen, newest last (method + path + headers), for assertions. */
  seen: { method: string; url: string; headers: Record<string, string>; bodyBytes: number }[];
  setHealth(status: number): void;
  /** From now on this share (0-1) of the answers (not health checks) is a 500 "app failed". */
  setFailureRate(rate: number): void;
  /** 500s answered because of setFailureRate. */
  failed: number;
  stop(): Promise<void>;
}

export const GZIP_TEXT = "hello gzip ".repeat(1000);
export const GZIP_BYTES = Bun.gzipSync(new TextEncoder().encode(GZIP_TEXT));

export function startBackend(name: string, options: { port?: number } = {}): Backend {
  let health = 200;
  let failureRate = 0;
  let failureDebt = 0;
  const backend: Backend = {
    name,
    port: 0,
    address: "",
    server: undefined as unknown as Server<unknown>,
    inflight: 0,
    requests: 0,
    healthChecks: 0,
    seen: [],
    setHealth(status) {
      health = status;
    },
    setFailureRate(rate) {
      failureRate = rate;
      failureDebt = 0;
    },
    failed: 0,
    async stop() {
      await backend.server.stop(true);
    },
  };
  backend.server = Bun.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    development: false,
    idleTimeout: 0,
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    async fetch(req) {
      // Without a usable Host header Bun gives the bare request target.
      const url = new URL(req.url, "http://no-host.invalid");
      const headers = { "x-backend": name };
      if (url.pathname === "/up") {
        backend.healthChecks++;
        backend.lastHealthCheck = Object.fromEntries(req.headers);
        return new Response(health === 200 ? "ok" : "unhealthy", { status: health, headers });
      }
      backend.requests++;
      backend.inflight++;
      try {
        let bodyBytes = 0;
        if (req.body) for await (const chunk of req.body) bodyBytes += chunk.byteLength;
        backend.seen.push({ method: req.method, url: req.url, headers: Object.fromEntries(req.headers), bodyBytes });
        if (backend.seen.length > 1000) backend.seen.shift();
        const path = url.pathname;
        failureDebt += failureRate;
        if (failureDebt >= 1 - 1e-9) {
          failureDebt -= 1;
          backend.failed++;
          return new Response("app failed", { status: 500, headers });
        }
        if (path === "/slow") {
          await Bun.sleep(Number(url.searchParams.get("ms") ?? 1000));
          return new Response(`slow from ${name}`, { headers });
        }
        const status = /^\/status\/(\d{3})$/.exec(path);
        if (status) return new Response(`app says ${status[1]}`, { status: Number(status[1]), headers });
        if (path === "/gzip") {
          return new Response(GZIP_BYTES, { headers: { ...headers, "content-encoding": "gzip", "content-type": "text/plain" } });
        }
        // An app telling the proxy that this write needs no writer affinity.
        if (path === "/no-affinity") return new Response("no pin", { headers: { ...headers, "x-writer-affinity": url.searchParams.get("value") ?? "false" } });
        if (path === "/redirect") return new Response(null, { status: 302, headers: { ...headers, location: "/echo?from=redirect" } });
        if (path === "/stream") {
          const chunks = Number(url.searchParams.get("chunks") ?? 5);
          const interval = Number(url.searchParams.get("interval") ?? 100);
          let i = 0;
          const stream = new ReadableStream({
            async pull(controller) {
              if (i > 0) await Bun.sleep(interval);
              if (i >= chunks) return controller.close();
              controller.enqueue(new TextEncoder().encode(`chunk ${i++} at ${Date.now()}\n`));
            },
          });
          return new Response(stream, { headers: { ...headers, "content-type": "text/plain" } });
        }
        if (path === "/bytes") {
          const n = Number(url.searchParams.get("n") ?? 1024);
          const bytes = new Uint8Array(n);
          for (let i = 0; i < n; i++) bytes[i] = i % 251;
          return new Response(bytes, { headers: { ...headers, "content-type": "application/octet-stream" } });
        }
        if (path === "/cookies") {
          const h = new Headers(headers);
          h.append("set-cookie", "a=1; Path=/");
          h.append("set-cookie", "b=2; Path=/; HttpOnly");
          h.append("set-cookie", "c=3, with comma; Path=/");
          return new Response("cookies", { headers: h });
        }
        if (path === "/hop") {
          return new Response("hop", {
            headers: { ...headers, connection: "x-private", "x-private": "secret", "keep-alive": "timeout=5", "proxy-connection": "keep-alive" },
          });
        }
        return Response.json(
          { backend: name, method: req.method, url: req.url, headers: Object.fromEntries(req.headers), bodyBytes },
          { headers },
        );
      } finally {
        backend.inflight--;
      }
    },
  });
  backend.port = backend.server.port!;
  backend.address = `127.0.0.1:${backend.port}`;
  return backend;
}

/** A port where nothing listens: bind one, then close it. */
export async function deadPort(): Promise<number> {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = server.port!;
  await server.stop(true);
  return port;
}
