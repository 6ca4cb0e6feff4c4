// Second reference point: the same minimal forwarder as bench/forwarder.ts,
// but on node:http instead of Bun.serve, so the table shows what node:http
// itself costs on Bun (parachute's HTTP/1.x listeners are node:http today,
// because it keeps a streamed download's Content-Length). Request headers come
// from rawHeaders into a Headers; a small response is read whole and written
// with one end() (node:http's cheap path); a big one is written chunk by chunk,
// waiting for "drain" when the socket is full. Prints {"port":N} once listening.
import * as http from "node:http";
import { once } from "node:events";
import { Readable } from "node:stream";

const upstream = process.env.BENCH_UPSTREAM;
if (!upstream) throw new Error("BENCH_UPSTREAM (http://127.0.0.1:PORT) is not set");

const SMALL_RESPONSE_BYTES = 64 * 1024;
const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "host"]);

function requestHeaders(req: http.IncomingMessage): Headers {
  const h = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i]!.toLowerCase())) h.append(raw[i]!, raw[i + 1]!);
  h.set("host", req.headers.host ?? "");
  h.set("x-forwarded-for", req.socket.remoteAddress ?? "");
  h.set("x-forwarded-proto", "http");
  return h;
}

function responseHeaders(res: Response): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of res.headers) if (!HOP.has(name)) out[name] = value;
  const cookies = res.headers.getSetCookie();
  if (cookies.length) out["set-cookie"] = cookies;
  return out;
}

async function forward(req: http.IncomingMessage, res: http.ServerResponse) {
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const up = await fetch(upstream + (req.url ?? "/"), {
    method: req.method,
    headers: requestHeaders(req),
    body: hasBody ? (Readable.toWeb(req) as ReadableStream) : undefined,
    redirect: "manual",
    decompress: false,
  });
  const length = Number(up.headers.get("content-length") ?? NaN);
  res.writeHead(up.status, up.statusText, responseHeaders(up));
  if (!up.body || length <= SMALL_RESPONSE_BYTES) {
    res.end(Buffer.from(await up.arrayBuffer()));
    return;
  }
  for await (const chunk of up.body) {
    if (!res.write(chunk)) await once(res, "drain");
  }
  res.end();
}

const server = http.createServer((req, res) => {
  forward(req, res).catch(() => {
    if (!res.headersSent) res.writeHead(502).end("Bad Gateway");
    else res.destroy();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(JSON.stringify({ port: typeof address === "object" && address ? address.port : 0 }));
});

const stop = () => {
  server.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
