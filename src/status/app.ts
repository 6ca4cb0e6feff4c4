// The status page's routes (README "Status page"): the HTML page and its
// script and style, /status.json, and /events, a server-sent event stream of
// the same JSON once a second. Read-only: GET and HEAD only. Served on its own
// listener, never on the proxied ports.
import { Hono, type Context, type Next } from "hono";
import { streamSSE } from "hono/streaming";
import { isIP } from "node:net";
import { PAGE_HTML, PAGE_SCRIPT, PAGE_STYLE } from "./page.ts";
import type { Reading, TrafficSampler } from "./sampler.ts";
import { statusSnapshot, type StatusSources } from "./snapshot.ts";

export interface StatusAppOptions {
  sources: StatusSources;
  sampler: TrafficSampler;
  /** Serve loopback peers only, asking for a loopback Host (the listener is bound to a loopback address). */
  loopbackOnly: boolean;
}

export function isLoopback(address: string): boolean {
  const plain = address.replace(/^::ffff:/i, "");
  return plain === "::1" || (isIP(plain) === 4 && plain.startsWith("127."));
}

/** A Host header naming this machine's loopback: what a browser sends through an SSH tunnel (`localhost:8080`). */
function loopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return name === "localhost" || name.endsWith(".localhost") || isLoopback(name);
}

const SECURITY_HEADERS = {
  // Everything the page uses comes from here: no inline code, no other origin, no framing.
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

/** What the listener tells the app about each request: the peer's address. */
export type StatusBindings = { peer: string };

export function createStatusApp({ sources, sampler, loopbackOnly }: StatusAppOptions) {
  const app = new Hono<{ Bindings: StatusBindings }>();
  const snapshot = (reading: Reading) => statusSnapshot(sources, reading, sampler);

  // A loopback listener is for the operator on this machine (or at the end of
  // an SSH tunnel). A peer from elsewhere is refused, and so is a Host that
  // is not a loopback name: a web page the operator visits cannot reach the
  // status page by DNS rebinding.
  app.use(async (c: Context<{ Bindings: StatusBindings }>, next: Next) => {
    if (loopbackOnly) {
      const peer = c.env.peer;
      if (!isLoopback(peer)) return c.text(`the status page answers loopback clients only (this one is ${peer}); open it through an SSH tunnel, or run with --status-bind\n`, 403);
      if (!loopbackHost(c.req.header("host") ?? new URL(c.req.url).host)) return c.text("the status page answers only to a loopback host name (localhost, 127.0.0.1, [::1])\n", 403);
    }
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return c.text("the status page is read-only\n", 405, { allow: "GET, HEAD" });
    await next();
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
  });

  app.get("/", (c) => c.html(PAGE_HTML));
  app.get("/status.js", (c) => c.body(PAGE_SCRIPT, 200, { "content-type": "text/javascript; charset=utf-8" }));
  app.get("/status.css", (c) => c.body(PAGE_STYLE, 200, { "content-type": "text/css; charset=utf-8" }));
  app.get("/status.json", async (c) => {
    sampler.polled();
    return c.json(snapshot(await sampler.sample()));
  });
  app.get("/events", (c) =>
    streamSSE(c, async (stream) => {
      const release = sampler.watch();
      let wake: (() => void) | undefined;
      let next: Reading | undefined;
      const unsubscribe = sampler.onReading((reading) => {
        next = reading;
        wake?.();
      });
      const done = () => {
        release();
        unsubscribe();
        wake?.();
      };
      stream.onAbort(done);
      try {
        await stream.writeSSE({ event: "status", data: JSON.stringify(snapshot(await sampler.sample())) });
        while (!stream.aborted) {
          if (!next) await new Promise<void>((resolve) => (wake = resolve));
          const reading = next;
          next = undefined;
          if (reading && !stream.aborted) await stream.writeSSE({ event: "status", data: JSON.stringify(snapshot(reading)) });
        }
      } finally {
        done();
      }
    }),
  );
  app.notFound((c) => c.text("Not Found\n", 404));
  return app;
}
