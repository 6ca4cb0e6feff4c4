// Long-lived responses (README "Forwarding"), end to end: server-sent events are delivered
// as they are produced, are not cut by --target-timeout (which covers only the
// wait for response headers), and a thousand open streams do not stall other
// requests (Bun's fetch caps a process at 256 requests in flight; parachute does not use it).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { RawStreamClient } from "./support/raw-client.ts";
import { percentile, until } from "./support/rss.ts";
import { startStreamBackend, type StreamBackend } from "./support/stream-backend.ts";
import { Proxy } from "./support/proxy.ts";

let proxy: Proxy;
let app: StreamBackend;

async function deploy(service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}`);
}

beforeAll(async () => {
  app = startStreamBackend();
  proxy = await Proxy.start();
  await deploy("events", ["--target", app.address, "--host", "events.test", "--target-timeout", "2s"]);
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  await app?.stop();
});

/** Reads an event stream, noting when each complete `data:` event arrived (ms after `start`). */
async function readEvents(res: Response, start: number): Promise<{ data: string; at: number }[]> {
  const events: { data: string; at: number }[] = [];
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of res.body!) {
    text += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = text.indexOf("\n\n")) !== -1) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim())
        .join("\n");
      if (data) events.push({ data, at: performance.now() - start });
    }
  }
  return events;
}

test(
  "a 30 s event stream with an event every 5 s arrives event by event, through --target-timeout 2s",
  async () => {
    const start = performance.now();
    const res = await proxy.fetch("/sse?events=6&interval=5000", { host: "events.test" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const events = await readEvents(res, start);
    console.log(`SSE 30 s: events arrived at ${events.map((e) => (e.at / 1000).toFixed(2)).join(", ")} s`);

    expect(events.map((e) => e.data)).toEqual(["event 0", "event 1", "event 2", "event 3", "event 4", "event 5"]);
    // Each event is delivered when produced (about 5 s apart), not all at the end.
    expect(events[0]!.at).toBeGreaterThan(4000);
    expect(events[0]!.at).toBeLessThan(7000);
    for (let i = 1; i < events.length; i++) {
      const gap = events[i]!.at - events[i - 1]!.at;
      expect(gap).toBeGreaterThan(4000);
      expect(gap).toBeLessThan(6500);
    }
    // The whole 30 s stream went through although every gap exceeds the 2 s target timeout.
    expect(events.at(-1)!.at).toBeGreaterThan(28_000);
    const logged = await proxy.waitForLog((l) => l.msg === "Request" && l.service === "events" && l.path === "/sse");
    expect(logged.status).toBe(200);
    expect(logged.error).toBeUndefined();
  },
  45_000,
);

test(
  "1,000 open event streams to one service do not stall 200 ordinary requests; closing them releases the upstream streams",
  async () => {
    const N = 1000;
    const before = app.holding;
    // Raw sockets: the test process's own fetch is capped at 256 requests in flight.
    const clients = Array.from({ length: N }, () => new RawStreamClient(proxy.httpPort, "/hold", "events.test"));
    try {
      const opened = await Promise.race([
        Promise.allSettled(clients.map((c) => c.firstEvent)),
        Bun.sleep(30_000).then(() => "timeout" as const),
      ]);
      if (opened === "timeout") {
        const got = clients.filter((c) => c.events > 0).length;
        throw new Error(`only ${got}/${N} streams delivered their first event within 30 s`);
      }
      const failed = opened.filter((r) => r.status === "rejected");
      expect(failed.length).toBe(0);
      expect(app.holding - before).toBe(N);

      // Meanwhile: 200 ordinary requests, 20 at a time.
      const latencies: number[] = [];
      const statuses: number[] = [];
      await Promise.all(
        Array.from({ length: 20 }, async (_, loop) => {
          for (let i = 0; i < 10; i++) {
            const sent = performance.now();
            const res = await proxy.fetch(`/bytes?n=100&loop=${loop}&i=${i}`, { host: "events.test", signal: AbortSignal.timeout(10_000) });
            await res.arrayBuffer();
            latencies.push(performance.now() - sent);
            statuses.push(res.status);
          }
        }),
      );
      const p50 = percentile(latencies, 50);
      const p99 = percentile(latencies, 99);
      console.log(
        `with ${N} open event streams: 200 ordinary requests, median ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms`,
      );
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect(p99).toBeLessThan(2000);
      // Every stream is still open.
      expect(clients.filter((c) => c.closed).length).toBe(0);
      expect(app.holding - before).toBe(N);
    } finally {
      for (const c of clients) c.close();
    }
    // The proxy cancels each upstream stream when its client goes away.
    await until("the backend's held streams to be released", () => app.holding === before, 15_000, 50);
  },
  60_000,
);
