// Reference point for the benchmark: the smallest sensible Bun reverse proxy
// (Bun.serve + fetch, hop-by-hop
// headers stripped, X-Forwarded-* set, no routing, logging or metrics).
// parachute cannot be faster than this on the same runtime; the gap between
// the two is what parachute's own work costs. Prints {"port":N} once listening.
// With BENCH_TLS_CERT and BENCH_TLS_KEY (PEM files) it is the HTTPS baseline:
// the same forwarder over TLS, speaking HTTP/2 to clients that offer h2 (ALPN)
// and HTTP/1.1 to the others, as parachute's HTTPS port does.
const upstream = process.env.BENCH_UPSTREAM;
if (!upstream) throw new Error("BENCH_UPSTREAM (http://127.0.0.1:PORT) is not set");
const certFile = process.env.BENCH_TLS_CERT;
const keyFile = process.env.BENCH_TLS_KEY;
const tls = certFile && keyFile ? { cert: Bun.file(certFile), key: Bun.file(keyFile) } : undefined;
const proto = tls ? "https" : "http";

const HOP = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"];
function stripHop(h: Headers) {
  for (const name of (h.get("connection") ?? "").split(",")) if (name.trim()) h.delete(name.trim());
  for (const name of HOP) h.delete(name);
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  development: false,
  ...(tls ? { tls, http2: true } : {}),
  async fetch(req, srv) {
    const ip = srv.requestIP(req)?.address ?? "";
    const start = req.url.indexOf("/", req.url.indexOf("//") + 2);
    const h = new Headers(req.headers);
    stripHop(h);
    h.set("x-forwarded-for", ip);
    h.set("x-forwarded-proto", proto);
    try {
      const res = await fetch(upstream + req.url.slice(start), {
        method: req.method,
        headers: h,
        body: req.body,
        redirect: "manual",
        decompress: false,
        signal: req.signal,
      });
      const rh = new Headers(res.headers);
      stripHop(rh);
      return new Response(res.body, { status: res.status, statusText: res.statusText, headers: rh });
    } catch {
      return new Response("Bad Gateway", { status: 502 });
    }
  },
});

console.log(JSON.stringify({ port: server.port }));
const stop = () => {
  void server.stop(true);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
