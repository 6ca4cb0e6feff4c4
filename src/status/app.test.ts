import { expect, test } from "bun:test";
import { Metrics } from "../metrics.ts";
import type { ServiceView } from "../service/view.ts";
import { createStatusApp, isLoopback } from "./app.ts";
import { TrafficSampler } from "./sampler.ts";
import type { HistoryRecord } from "../service/history.ts";
import { HISTORY_SHOWN } from "./snapshot.ts";

const web: ServiceView = {
  name: "web",
  hosts: ["app.test"],
  pathPrefixes: ["/"],
  tls: true,
  state: "paused",
  targets: [{ address: "10.0.0.1:3000", state: "healthy", role: "writer", lastCheck: "GET /up returned 200" }],
  rollout: { percent: 10, list: ["alice"] },
};
const none = { targets: [], readTargets: [], rolloutTargets: [] };
const deployed: HistoryRecord = {
  time: "2026-01-01T00:00:00.000Z",
  command: "deploy",
  options: { targets: ["10.0.0.1:3000"], hosts: ["app.test"], deployTimeout: "30s" },
  before: none,
  after: { ...none, targets: ["10.0.0.1:3000"] },
  durationMs: 1200,
  outcome: "ok",
};

function app(loopbackOnly = true, history: (service: string) => HistoryRecord[] = () => []) {
  const metrics = new Metrics();
  metrics.recordRequest("web", "GET", 200, 0.01);
  metrics.recordRequest("web", "GET", 502, 0.01);
  const sampler = new TrafficSampler(async () => [{ ...metrics.requestSamples(), inFlight: [{ service: "web", value: 2, paused: 1 }] }]);
  const tlsHosts = () => [{ host: "app.test", source: "acme" as const, issuing: false, error: { message: "connection refused", at: Date.UTC(2026, 0, 1) } }];
  const status = createStatusApp({ sources: { services: () => [web], tlsHosts, history }, sampler, loopbackOnly });
  const get = (path: string, peer = "127.0.0.1", init: RequestInit = {}) =>
    status.fetch(new Request(`http://localhost:8080${path}`, init), { peer });
  return { get, sampler };
}

test("isLoopback knows IPv4, IPv6 and mapped loopback addresses", () => {
  expect(["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"].map(isLoopback)).toEqual([true, true, true, true]);
  expect(["192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "", "localhost"].map(isLoopback)).toEqual([false, false, false, false, false]);
});

test("/status.json is the list view of each service with its traffic, certificates and history", async () => {
  const { get, sampler } = app(true, (service) => (service === "web" ? [deployed] : []));
  const res = await get("/status.json");
  expect(res.status).toBe(200);
  expect(res.headers.get("cache-control")).toBe("no-store");
  const body = (await res.json()) as { services: Record<string, unknown>[] };
  expect(body.services).toEqual([
    {
      ...web,
      inFlight: 2,
      waiting: 1,
      requests: { total: 2, errors5xx: 1 },
      series: { t: [], requestRate: [], errorRate: [], p50: [], p99: [], inFlight: [] },
      certificates: [{ host: "app.test", source: "acme", issuing: false, error: { message: "connection refused", at: "2026-01-01T00:00:00.000Z" } }],
      history: [{ ...deployed, commandLine: "deploy --host app.test --deploy-timeout 30s" }],
    },
  ]);
  sampler.stop();
});

test("the history shows the last records, oldest first, as history --json gives them", async () => {
  const records = Array.from({ length: HISTORY_SHOWN + 5 }, (_, i): HistoryRecord => ({ ...deployed, durationMs: i }));
  const { get, sampler } = app(true, () => records);
  const body = (await (await get("/status.json")).json()) as { services: { history: HistoryRecord[] }[] };
  expect(body.services[0]!.history.map((r) => r.durationMs)).toEqual(records.slice(-HISTORY_SHOWN).map((r) => r.durationMs));
  sampler.stop();
});

test("the page, its script and style come from here, under a policy that allows nothing else", async () => {
  const { get } = app();
  const page = await get("/");
  expect(page.headers.get("content-type")).toStartWith("text/html");
  const html = await page.text();
  expect(html).toContain('<script src="status.js" defer></script>');
  expect(html).not.toMatch(/https?:\/\//);
  expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
  expect((await get("/status.js")).headers.get("content-type")).toStartWith("text/javascript");
  expect((await get("/status.css")).headers.get("content-type")).toStartWith("text/css");
  expect((await get("/nothing")).status).toBe(404);
});

test("read-only: anything but GET and HEAD is 405", async () => {
  const { get } = app();
  const head = await get("/", "127.0.0.1", { method: "HEAD" });
  expect(head.status).toBe(200);
  expect(await head.text()).toBe("");
  const res = await get("/status.json", "127.0.0.1", { method: "POST", body: "{}" });
  expect(res.status).toBe(405);
  expect(res.headers.get("allow")).toBe("GET, HEAD");
});

test("on loopback, other peers and non-loopback Host names are refused; bound elsewhere, anyone is served", async () => {
  const loopback = app(true);
  const refused = await loopback.get("/", "192.0.2.7");
  expect(refused.status).toBe(403);
  expect(await refused.text()).toContain("loopback clients only (this one is 192.0.2.7)");
  expect((await loopback.get("/", "::1")).status).toBe(200);
  const rebound = await loopback.get("/status.json", "127.0.0.1", { headers: { host: "attacker.example" } });
  expect(rebound.status).toBe(403);
  for (const host of ["localhost:8080", "127.0.0.1:9000", "[::1]:8080", "status.localhost"]) {
    expect((await loopback.get("/", "127.0.0.1", { headers: { host } })).status).toBe(200);
  }
  const open = app(false);
  expect((await open.get("/", "192.0.2.7", { headers: { host: "status.example" } })).status).toBe(200);
});

test("/events streams the status as server-sent events, and releases the sampler when the client leaves", async () => {
  const { get, sampler } = app();
  const abort = new AbortController();
  const res = await get("/events", "127.0.0.1", { signal: abort.signal });
  expect(res.headers.get("content-type")).toStartWith("text/event-stream");
  const reader = res.body!.getReader();
  let text = "";
  while (!text.includes("\n\n")) text += new TextDecoder().decode((await reader.read()).value);
  expect(text).toStartWith("event: status\ndata: ");
  const status = JSON.parse(text.slice(text.indexOf("data: ") + 6, text.indexOf("\n\n")));
  expect(status.services[0].name).toBe("web");
  expect(sampler.running).toBe(true);
  abort.abort();
  await reader.cancel().catch(() => {});
  while (sampler.running) await Bun.sleep(20);
  expect(sampler.running).toBe(false);
});
