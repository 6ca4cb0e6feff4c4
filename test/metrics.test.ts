// /metrics after real traffic: Prometheus text with the expected series and counts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startBackend, type Backend } from "./support/backend.ts";
import { freePort, Proxy } from "./support/proxy.ts";

let proxy: Proxy;
let backend: Backend;
let metricsPort: number;

beforeAll(async () => {
  backend = startBackend("metrics");
  metricsPort = await freePort();
  proxy = await Proxy.start({ args: ["--metrics-port", String(metricsPort)] });
  const deploy = await proxy.cli(["deploy", "web", "--target", backend.address, "--host", "m.test"]);
  expect(deploy.code).toBe(0);
}, 20_000);

afterAll(async () => {
  await proxy.stop();
  await backend.stop();
});

/** Parses Prometheus text exposition into samples; throws on a malformed line. */
function parsePrometheus(text: string) {
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const type = /^# TYPE (\w+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line);
    if (!m) throw new Error(`malformed metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[4]) });
  }
  return { samples, types };
}

test("/metrics counts requests by service, method and status, with durations, in-flight, health and deploys", async () => {
  for (let i = 0; i < 5; i++) expect((await proxy.fetch("/ok", { host: "m.test" })).status).toBe(200);
  for (let i = 0; i < 2; i++) expect((await proxy.fetch("/status/500", { host: "m.test" })).status).toBe(500);
  expect((await proxy.fetch("/ok", { host: "m.test", method: "POST", body: "x" })).status).toBe(200);
  expect((await proxy.fetch("/", { host: "nobody.test" })).status).toBe(404);
  // The request log line (and the metric) is written when the exchange ends; wait for the last one.
  await proxy.waitForLog((l) => l.msg === "Request" && l.host === "nobody.test");

  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain");
  const { samples, types } = parsePrometheus(await res.text());
  const value = (name: string, labels: Record<string, string>) =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

  expect(types.get("parachute_requests_total")).toBe("counter");
  expect(value("parachute_requests_total", { service: "web", method: "GET", status: "200" })).toBe(5);
  expect(value("parachute_requests_total", { service: "web", method: "GET", status: "500" })).toBe(2);
  expect(value("parachute_requests_total", { service: "web", method: "POST", status: "200" })).toBe(1);
  expect(value("parachute_requests_total", { service: "", method: "GET", status: "404" })).toBe(1);

  expect(types.get("parachute_request_duration_seconds")).toBe("histogram");
  expect(value("parachute_request_duration_seconds_count", { service: "web", method: "GET", status: "200" })).toBe(5);
  expect(value("parachute_request_duration_seconds_bucket", { service: "web", method: "GET", status: "200", le: "+Inf" })).toBe(5);

  expect(value("parachute_requests_in_flight", { service: "web" })).toBe(0);
  expect(value("parachute_target_healthy", { service: "web", target: backend.address, state: "healthy" })).toBe(1);
  expect(value("parachute_deploys_total", { service: "web", result: "success" })).toBe(1);
  expect(value("parachute_deploy_duration_seconds_count", { service: "web", result: "success" })).toBe(1);
  expect(types.get("parachute_certificate_expiry_timestamp_seconds")).toBe("gauge");
});

test("a failed deploy is counted as a failure", async () => {
  const failing = await proxy.cli(["deploy", "web", "--target", "127.0.0.1:1", "--deploy-timeout", "300ms", "--health-check-interval", "100ms"]);
  expect(failing.code).toBe(1);
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  expect(text).toContain('parachute_deploys_total{service="web",result="failure"} 1');
});

test("the metrics listener serves only /metrics, never proxied traffic", async () => {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/ok`, { headers: { host: "m.test" } });
  expect(res.status).toBe(404);
  expect(await res.text()).not.toContain("metrics");
  expect(backend.seen.some((s) => s.url.includes(String(metricsPort)))).toBe(false);
});

test("--exclude-metrics-path: requests below it are logged and proxied but not counted; others are", async () => {
  const excluded = startBackend("metrics-excluded");
  try {
    const deploy = await proxy.cli(["deploy", "quiet", "--target", excluded.address, "--host", "q.test", "--exclude-metrics-path", "/internal,/up"]);
    expect(deploy.code).toBe(0);
    for (const path of ["/internal", "/internal/ping", "/up", "/internals", "/echo"]) {
      const res = await proxy.fetch(path, { host: "q.test" });
      await res.arrayBuffer();
      expect([path, res.headers.get("x-backend")]).toEqual([path, "metrics-excluded"]);
    }
    await proxy.waitForLog((l) => l.msg === "Request" && l.host === "q.test" && l.path === "/echo");
    const logged = proxy.logs.filter((l) => l.msg === "Request" && l.service === "quiet").map((l) => l.path);
    expect(logged).toEqual(["/internal", "/internal/ping", "/up", "/internals", "/echo"]);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const counted = parsePrometheus(text).samples.filter((s) => s.name === "parachute_requests_total" && s.labels.service === "quiet");
    // /internals is not below /internal: a path prefix ends at a segment boundary.
    expect(counted.map((s) => [s.labels.method, s.labels.status, s.value])).toEqual([["GET", "200", 2]]);
  } finally {
    await excluded.stop();
  }
});

test("--exclude-metrics-path also matches the path the target sees, after the prefix is stripped (as kamal-proxy does)", async () => {
  const app = startBackend("metrics-stripped");
  try {
    const deploy = await proxy.cli(["deploy", "stripped", "--target", app.address, "--host", "s.test", "--path-prefix", "/api", "--exclude-metrics-path", "/up"]);
    expect(deploy.code).toBe(0);
    for (const path of ["/api/up", "/api/echo"]) {
      const res = await proxy.fetch(path, { host: "s.test" });
      await res.arrayBuffer();
      expect(res.status).toBe(200);
    }
    await proxy.waitForLog((l) => l.msg === "Request" && l.host === "s.test" && l.path === "/api/echo");
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const counted = parsePrometheus(text).samples.filter((s) => s.name === "parachute_requests_total" && s.labels.service === "stripped");
    expect(counted.map((s) => s.value)).toEqual([1]);
  } finally {
    await app.stop();
  }
});
