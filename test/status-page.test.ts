// The status page (README "Status page") with two workers: what /status.json
// says agrees with `list --json` and with /metrics; it is served only on its
// own port and never on the proxied ones, and the proxied ports never serve
// it; a loopback status listener cannot be reached from another address, one
// bound elsewhere can; /events streams it. The browser test is
// status-browser.test.ts.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as os from "node:os";
import * as path from "node:path";
import { deadPort, type Backend } from "./support/backend.ts";
import { useBackends } from "./support/fixture.ts";
import { parsePrometheus } from "./support/prometheus.ts";
import { RawConnection } from "./support/raw-client.ts";
import { freePort, Proxy, tempDir } from "./support/proxy.ts";
import { statusJson, statusUrl, statusWhen, type StatusService } from "./support/status.ts";
import { createTestCa } from "./support/tls-tools.ts";

setDefaultTimeout(40_000);

// Checks far apart: a target's last check stays put while list and the page are compared.
const slow = ["--health-check-interval", "30s"];
const opensslAvailable = Boolean(Bun.which("openssl"));
const backend = useBackends();

/** This machine's first non-loopback IPv4 address, to be a peer that is not loopback. */
function externalAddress(): string | undefined {
  const found = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
  if (!found && process.env.CI) throw new Error("the status page tests need a non-loopback IPv4 address");
  return found;
}

/** The page's targets as `list` shows them: without the time of the last check, which `list` leaves out. */
const asListed = (targets: StatusService["targets"]) => targets.map(({ lastCheckAt: _, ...t }) => t);

describe("with two workers", () => {
  let proxy: Proxy;
  let statusPort: number;
  let metricsPort: number;
  let web: Backend;
  let api: Backend;

  beforeAll(async () => {
    statusPort = await freePort();
    metricsPort = await freePort();
    const https = await freePort();
    proxy = await Proxy.start({
      args: ["--workers", "2", "--https-port", String(https), "--status-port", String(statusPort), "--metrics-port", String(metricsPort)],
      // ACME orders fail at once: the page shows the error.
      env: { PARACHUTE_ACME_DIRECTORY: `http://127.0.0.1:${await deadPort()}/directory`, PARACHUTE_ACME_RETRY: "1h" },
    });
    web = backend("web");
    api = backend("api");
    expect((await proxy.cli(["deploy", "web", ...slow, "--target", web.address, "--host", "web.test"])).code).toBe(0);
    expect((await proxy.cli(["deploy", "api", ...slow, "--target", api.address, "--host", "api.test", "--path-prefix", "/v1", "--tls"])).code).toBe(0);
  }, 40_000);

  afterAll(async () => {
    await proxy?.stop();
  });

  test("an HTTP/1.0 request without a Host gets 400 on the status and metrics ports, and no error is logged", async () => {
    for (const port of [statusPort, metricsPort]) {
      const conn = await RawConnection.open(port);
      try {
        conn.write("GET / HTTP/1.0\r\n\r\n");
        expect((await conn.readHead()).status).toBe(400);
      } finally {
        conn.close();
      }
    }
    expect(proxy.output).not.toContain("Invalid URL");
  });

  test("the control plane serves it on its own port, bound to 127.0.0.1", async () => {
    const started = await proxy.waitForLog((l) => l.msg === "Server started");
    expect([started.status_port, started.status_bind]).toEqual([statusPort, "127.0.0.1"]);
    const page = await fetch(statusUrl(statusPort));
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toStartWith("text/html");
    expect(await page.text()).toContain("<title>parachute status</title>");
    const status = await statusJson(statusPort);
    expect(status.pid).toBe(proxy.pid);
  });

  test("/status.json agrees with list --json, field by field", async () => {
    const listed = await proxy.listJson();
    const status = await statusJson(statusPort);
    expect(status.services.map((s) => s.name)).toEqual(listed.map((s) => s.name));
    for (const [i, service] of listed.entries()) {
      const shown = status.services[i]!;
      const sameFields = Object.fromEntries(Object.keys(service).map((k) => [k, k === "targets" ? asListed(shown.targets) : shown[k]]));
      expect(sameFields).toEqual(service as unknown as Record<string, unknown>);
    }
    expect(status.services[0]!.targets[0]).toEqual({ address: api.address, state: "healthy", role: "writer", lastCheck: "GET /up returned 200", lastCheckAt: expect.any(String) });
  });

  test("/status.json agrees with /metrics: requests, 5xx, in flight, target states, certificates", async () => {
    for (let i = 0; i < 6; i++) expect((await proxy.fetch("/ok", { host: "web.test", headers: { connection: "close" } })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await proxy.fetch("/status/503", { host: "web.test", headers: { connection: "close" } })).status).toBe(503);
    // A request's metric is written when its exchange ends, in whichever worker served it.
    await statusWhen(statusPort, "the 9 requests counted", (s) => s.services.find((x) => x.name === "web")!.requests.total === 9);
    const [status, text] = await Promise.all([statusJson(statusPort), fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text())]);
    const { samples } = parsePrometheus(text);
    const sum = (name: string, match: (labels: Record<string, string>) => boolean) =>
      samples.filter((s) => s.name === name && match(s.labels)).reduce((total, s) => total + s.value, 0);
    for (const service of status.services) {
      const of = (l: Record<string, string>) => l.service === service.name;
      expect(service.requests.total).toBe(sum("parachute_requests_total", of));
      expect(service.requests.errors5xx).toBe(sum("parachute_requests_total", (l) => of(l) && l.status!.startsWith("5")));
      expect(service.inFlight).toBe(sum("parachute_requests_in_flight", of));
      const states = samples.filter((s) => s.name === "parachute_target_healthy" && of(s.labels)).map((s) => [s.labels.target!, s.labels.state!]);
      expect(service.targets.map((t) => [t.address, t.state])).toEqual(states);
    }
    expect(status.services.find((s) => s.name === "web")!.requests).toEqual({ total: 9, errors5xx: 3 });
    const expiries = samples.filter((s) => s.name === "parachute_certificate_expiry_timestamp_seconds").map((s) => [s.labels.host!, s.value]);
    const shown = status.services.flatMap((s) => s.certificates.filter((c) => c.expiresAt).map((c) => [c.host, Math.floor(Date.parse(c.expiresAt!) / 1000)]));
    expect(shown).toEqual(expiries);
  });

  test("a TLS host shows its ACME error", async () => {
    const status = await statusWhen(statusPort, "the ACME error", (s) => Boolean(s.services.find((x) => x.name === "api")!.certificates[0]?.error));
    const [cert] = status.services.find((s) => s.name === "api")!.certificates;
    expect(cert).toMatchObject({ host: "api.test", source: "acme", issuing: false });
    expect(cert!.expiresAt).toBeUndefined();
    expect(cert!.error!.message.length).toBeGreaterThan(0);
    expect(Date.parse(cert!.error!.at)).toBeGreaterThan(0);
  });

  test.skipIf(!opensslAvailable)("a custom certificate's expiry is the one /metrics gives", async () => {
    const ca = await createTestCa(tempDir("status-ca-"));
    const leaf = await ca.issue("secure", ["secure.test"], 20);
    const secure = backend("secure");
    const deployed = await proxy.cli(["deploy", "secure", ...slow, "--target", secure.address, "--host", "secure.test", "--tls", "--tls-certificate-path", leaf.cert, "--tls-private-key-path", leaf.key]);
    expect(deployed.code).toBe(0);
    const status = await statusJson(statusPort);
    const [cert] = status.services.find((s) => s.name === "secure")!.certificates;
    const days = (Date.parse(cert!.expiresAt!) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(19);
    expect(days).toBeLessThan(21);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toContain(`parachute_certificate_expiry_timestamp_seconds{host="secure.test"} ${Math.floor(Date.parse(cert!.expiresAt!) / 1000)}`);
    expect(cert!.source).toBe("custom");
    expect((await proxy.cli(["remove", "secure"])).code).toBe(0);
  });

  test("pause, stop and the rollout split show as list shows them", async () => {
    const canary = backend("canary");
    expect((await proxy.cli(["rollout", "deploy", "web", "--target", canary.address])).code).toBe(0);
    expect((await proxy.cli(["rollout", "set", "web", "--percent", "25", "--list", "alice"])).code).toBe(0);
    expect((await proxy.cli(["stop", "api", "--message", "back soon"])).code).toBe(0);
    const status = await statusJson(statusPort);
    const web = status.services.find((s) => s.name === "web")!;
    expect(web.rollout).toEqual({ percent: 25, list: ["alice"] });
    expect(web.targets.map((t) => [t.address, t.role])).toContainEqual([canary.address, "rollout"]);
    expect(status.services.find((s) => s.name === "api")).toMatchObject({ state: "stopped", message: "back soon" });
    const listed = await proxy.listJson();
    expect(status.services.map((s) => [s.name, s.state, asListed(s.targets)] as unknown[])).toEqual(listed.map((s) => [s.name, s.state, s.targets]));
    expect((await proxy.cli(["resume", "api"])).code).toBe(0);
    expect((await proxy.cli(["rollout", "stop", "web"])).code).toBe(0);
  });

  test("the deploy history is the one history --json gives, its last records", async () => {
    const status = await statusJson(statusPort);
    for (const service of status.services) {
      const result = await proxy.cli(["history", service.name, "--json"]);
      expect(result.code).toBe(0);
      const { records } = JSON.parse(result.stdout) as { records: Record<string, unknown>[] };
      expect(records.length).toBeGreaterThan(0);
      const shown = (service.history as Record<string, unknown>[]).map(({ commandLine: _, ...r }) => r);
      expect(shown).toEqual(records.slice(-10));
    }
    const web = status.services.find((s) => s.name === "web")!;
    expect((web.history as { commandLine: string }[]).map((r) => r.commandLine)).toContain("rollout set --percent 25 --list alice");
  });

  test("/events streams the status once a second", async () => {
    const abort = new AbortController();
    const res = await fetch(statusUrl(statusPort, "/events"), { signal: abort.signal });
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    while (text.split("\n\n").length < 3) text += decoder.decode((await reader.read()).value, { stream: true });
    abort.abort();
    const events = text.split("\n\n").slice(0, 2).map((e) => JSON.parse(e.slice(e.indexOf("data: ") + 6)) as { generatedAt: string; services: StatusService[] });
    expect(events[0]!.services.map((s) => s.name)).toEqual(["api", "web"]);
    expect(Date.parse(events[1]!.generatedAt)).toBeGreaterThan(Date.parse(events[0]!.generatedAt));
  });

  test("the status port never serves proxied traffic", async () => {
    for (const host of ["web.test", "api.test"]) {
      const res = await fetch(statusUrl(statusPort, "/ok"), { headers: { host } });
      // A proxied Host is not a loopback name: refused before any route.
      expect(res.status).toBe(403);
      expect(res.headers.get("x-backend")).toBeNull();
    }
    const res = await fetch(statusUrl(statusPort, "/ok"));
    expect(res.status).toBe(404);
    expect(res.headers.get("x-backend")).toBeNull();
    expect(web.seen.some((r) => r.url.includes(`:${statusPort}`))).toBe(false);
  });

  test("the proxied ports never serve the status page", async () => {
    for (const pathAndQuery of ["/", "/status.json", "/events", "/status.js"]) {
      for (const host of ["127.0.0.1", "localhost", `127.0.0.1:${statusPort}`]) {
        const res = await proxy.fetch(pathAndQuery, { host, headers: { connection: "close" } });
        const body = await res.text();
        expect(res.status).toBe(404); // no service has these hosts
        expect(body).not.toContain("parachute status");
        expect(body).not.toContain('"services"');
      }
    }
    // Through a service, the path goes to its target like any other.
    const res = await proxy.fetch("/status.json", { host: "web.test" });
    expect(res.headers.get("x-backend")).toBe("web");
  });

  test("read-only, and refused for a Host that is not a loopback name", async () => {
    expect((await fetch(statusUrl(statusPort, "/status.json"), { method: "POST", body: "{}" })).status).toBe(405);
    expect((await fetch(statusUrl(statusPort, "/status.json"), { method: "DELETE" })).status).toBe(405);
    const rebound = await fetch(statusUrl(statusPort, "/status.json"), { headers: { host: "attacker.example" } });
    expect(rebound.status).toBe(403);
  });

  test("from another address, a loopback status port cannot be reached", async () => {
    const address = externalAddress();
    if (!address) return console.warn("warning: no non-loopback IPv4 address here; skipped");
    const refused = await fetch(statusUrl(statusPort, "/status.json", address)).then(
      () => "answered",
      (error: Error & { code?: string }) => error.code ?? error.message,
    );
    expect(refused).toBe("ECONNREFUSED");
  });
});

test("bound elsewhere (--status-bind 0.0.0.0), it answers other addresses too", async () => {
  const address = externalAddress();
  if (!address) return console.warn("warning: no non-loopback IPv4 address here; skipped");
  const statusPort = await freePort();
  const proxy = await Proxy.start({ args: ["--workers", "1", "--status-port", String(statusPort), "--status-bind", "0.0.0.0"] });
  try {
    const res = await fetch(statusUrl(statusPort, "/status.json", address));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { services: unknown[] }).services).toEqual([]);
  } finally {
    await proxy.stop();
  }
});

test("a bad --status-bind fails the start, naming the value", async () => {
  const proxy = Proxy.start({ args: ["--status-port", String(await freePort()), "--status-bind", "nowhere"], stateDir: path.join(tempDir(), "s") });
  expect(await proxy.then(() => "started", (e: Error) => e.message)).toContain('invalid value for --status-bind: invalid address "nowhere"');
});

test("after an upgrade the successor serves the status page on the same port", async () => {
  const statusPort = await freePort();
  const proxy = await Proxy.start({ args: ["--workers", "1", "--status-port", String(statusPort)] });
  try {
    const before = await statusJson(statusPort);
    expect(before.pid).toBe(proxy.pid);
    const mark = proxy.logMark();
    const upgraded = await proxy.cli(["upgrade"]);
    expect(upgraded.code).toBe(0);
    const started = await proxy.waitForLog((l) => l.msg === "Server started" && l.pid !== proxy.pid, 15_000, mark);
    expect(started.status_port).toBe(statusPort);
    const after = await statusWhen(statusPort, "the successor answering", (s) => s.pid === started.pid);
    expect(after.pid).not.toBe(before.pid);
  } finally {
    await proxy.stop();
  }
});
