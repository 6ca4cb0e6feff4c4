// Maintenance (README "Traffic control"): pause holds new requests until resume (or 504
// past --max-pause), stop answers 503 with the operator's message (at once
// for requests already waiting in a pause), the health-check path keeps
// answering 200, and pause/stop survive a redeploy and a proxy restart.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { type Backend } from "./support/backend.ts";
import { useProxy } from "./support/fixture.ts";
import { Proxy } from "./support/proxy.ts";
import { eventually, getService, isPending, mustRun, restart } from "./support/traffic.ts";

/** Per-test bound: generous next to the few seconds each test needs on a busy 2-core machine. */
const TIMEOUT = 30_000;
// bunfig's `[test] timeout` is not a Bun setting (the default stays 5 s), so hooks get the bound here.
setDefaultTimeout(TIMEOUT);

const fixture = useProxy();
const backend = fixture.backend;
let proxy: Proxy;
beforeAll(() => {
  proxy = fixture.proxy;
});

interface Answer {
  status: number;
  backend: string | null;
  body: string;
  /** performance.now() when the answer arrived. */
  at: number;
}

function request(p: Proxy, host: string, pathAndQuery: string): Promise<Answer> {
  return p.fetch(pathAndQuery, { host }).then(async (res) => ({
    status: res.status,
    backend: res.headers.get("x-backend"),
    body: await res.text(),
    at: performance.now(),
  }));
}

/** The `Request` log line for a request whose query carries `tag`. */
function requestLog(p: Proxy, tag: string, timeoutMs = 5_000) {
  return p.waitForLog((l) => l.msg === "Request" && typeof l.query === "string" && l.query.includes(tag), timeoutMs);
}

describe("pause and resume", () => {
  test("pause drains in-flight requests, holds new ones (health path still 200), and resume releases them with 200", async () => {
    const host = "pause.test";
    const a = backend("pause-a");
    await mustRun(proxy, ["deploy", "pz", "--host", host, "--target", a.address]);

    // An in-flight request is let finish: pause returns once it has.
    const inflight = request(proxy, host, "/slow?ms=700");
    await eventually("the slow request to reach the backend", () => a.inflight === 1);
    const paused = await proxy.cli(["pause", "pz", "--max-pause", "20s"]);
    expect(paused.code).toBe(0);
    expect(isPending(inflight)).toBe(false);
    expect((await inflight).status).toBe(200);
    expect(await getService(proxy, "pz")).toMatchObject({ state: "paused" });

    // New requests wait…
    const before = a.requests;
    const held = [1, 2, 3].map((n) => request(proxy, host, `/echo?held=pz-${n}`));
    const up = await proxy.fetch("/up", { host });
    expect(up.status).toBe(200);
    const heldSince = performance.now();
    expect((await proxy.cli(["list"])).stdout).toContain("(paused)");
    expect(held.map(isPending)).toEqual([true, true, true]);
    expect(a.requests).toBe(before);

    // …and go through once resumed.
    const resumedAt = performance.now();
    const resumed = await proxy.cli(["resume", "pz"]);
    expect(resumed.code).toBe(0);
    const answers = await Promise.all(held);
    expect(answers.map((r) => [r.status, r.backend])).toEqual([
      [200, "pause-a"],
      [200, "pause-a"],
      [200, "pause-a"],
    ]);
    expect(a.requests).toBe(before + 3);
    // Answered only after the resume, and held by the proxy itself: its
    // request log counts the wait (sent before the health check answered,
    // so held for about the time from then to the resume; halved for slack).
    for (const [i, n] of [1, 2, 3].entries()) {
      expect(answers[i]!.at).toBeGreaterThan(resumedAt);
      const line = await requestLog(proxy, `held=pz-${n}`);
      expect(line.status).toBe(200);
      expect(Number(line.duration_ms)).toBeGreaterThanOrEqual((resumedAt - heldSince) / 2);
    }
    expect(await getService(proxy, "pz")).toMatchObject({ state: "running" });
    expect((await request(proxy, host, "/echo")).status).toBe(200);
  }, TIMEOUT);

  test("a request waiting longer than --max-pause gets 504", async () => {
    const host = "maxpause.test";
    const a = backend("maxpause-a");
    await mustRun(proxy, ["deploy", "mxp", "--host", host, "--target", a.address]);
    expect((await proxy.cli(["pause", "mxp", "--max-pause", "400ms"])).code).toBe(0);
    const sent = performance.now();
    const answer = await request(proxy, host, "/echo?waited=1");
    expect(answer.status).toBe(504);
    expect(answer.body).toContain("504");
    expect(answer.at - sent).toBeGreaterThanOrEqual(380);
    expect(answer.at - sent).toBeLessThan(5_000);
    expect(a.requests).toBe(0);
    expect((await proxy.cli(["resume", "mxp"])).code).toBe(0);
    const after = await request(proxy, host, "/echo");
    expect([after.status, after.backend]).toEqual([200, "maxpause-a"]);
  }, TIMEOUT);
});

describe("pause with a path prefix", () => {
  test("the health-check exemption uses the path the target sees, for GET and HEAD only", async () => {
    const host = "prefix-pause.test";
    const a = backend("prefix-pause");
    await mustRun(proxy, ["deploy", "pp", "--host", host, "--path-prefix", "/api", "--target", a.address]);
    await mustRun(proxy, ["pause", "pp", "--max-pause", "20s"]);
    try {
      const before = a.requests;
      // Other methods on the health path, and other paths, wait like any request…
      const post = proxy.fetch("/api/up", { host, method: "POST", body: "x" });
      const other = proxy.fetch("/api/other", { host });
      // …while the path the target sees as /up (the prefix is stripped) is answered at once, by the proxy.
      const up = await proxy.fetch("/api/up", { host });
      expect(up.status).toBe(200);
      expect(await up.text()).toBe("OK");
      const head = await proxy.fetch("/api/up", { host, method: "HEAD" });
      expect(head.status).toBe(200);
      expect([isPending(post), isPending(other)]).toEqual([true, true]);
      expect(a.requests).toBe(before);
      // `/up` is outside the service's prefix: no service, 404, paused or not.
      expect((await proxy.fetch("/up", { host })).status).toBe(404);
      await mustRun(proxy, ["resume", "pp"]);
      expect((await post).status).toBe(200);
      expect((await other).status).toBe(200);
    } finally {
      await proxy.cli(["resume", "pp"]);
      await proxy.cli(["remove", "pp"]);
    }
  });
});

describe("stop", () => {
  test("stop answers 503 with the message in the HTML page; health path still 200; resume restores", async () => {
    const host = "stop.test";
    const a = backend("stop-a");
    const message = "Back at 17:00 after the database upgrade";
    await mustRun(proxy, ["deploy", "stp", "--host", host, "--target", a.address]);
    const stopped = await proxy.cli(["stop", "stp", "--message", message]);
    expect(stopped.code).toBe(0);
    expect(await getService(proxy, "stp")).toMatchObject({ state: "stopped" });

    for (const path of ["/", "/echo?x=1", "/some/page"]) {
      const res = await proxy.fetch(path, { host });
      expect(res.status).toBe(503);
      expect(res.headers.get("content-type")).toContain("text/html");
      const body = await res.text();
      expect(body).toContain(message);
      expect(body.toLowerCase()).toContain("<html");
    }
    const up = await proxy.fetch("/up", { host });
    expect(up.status).toBe(200);
    expect(a.requests).toBe(0);

    expect((await proxy.cli(["resume", "stp"])).code).toBe(0);
    const after = await request(proxy, host, "/echo");
    expect([after.status, after.backend]).toEqual([200, "stop-a"]);
  }, TIMEOUT);

  test("requests waiting in a pause get the stop's 503 at once", async () => {
    const host = "pausestop.test";
    const a = backend("pausestop-a");
    const message = "Closed for maintenance";
    await mustRun(proxy, ["deploy", "pst", "--host", host, "--target", a.address]);
    expect((await proxy.cli(["pause", "pst", "--max-pause", "20s"])).code).toBe(0);
    const held = [1, 2, 3].map((n) => request(proxy, host, `/echo?held=pst-${n}`));
    expect((await proxy.fetch("/up", { host })).status).toBe(200);
    expect(held.map(isPending)).toEqual([true, true, true]);

    const stopAt = performance.now();
    const stopped = await proxy.cli(["stop", "pst", "--message", message]);
    expect(stopped.code).toBe(0);
    const answers = await Promise.all(held);
    for (const answer of answers) {
      expect(answer.status).toBe(503);
      expect(answer.body).toContain(message);
      // "At once": far sooner than the 20 s max-pause.
      expect(answer.at - stopAt).toBeLessThan(3_000);
    }
    expect(a.requests).toBe(0);
    const up = await proxy.fetch("/up", { host });
    expect(up.status).toBe(200);
    expect((await proxy.cli(["resume", "pst"])).code).toBe(0);
  }, TIMEOUT);
});

describe("pause and stop survive a redeploy and a restart", () => {
  let restartable: Proxy | undefined;

  afterAll(async () => {
    await restartable?.stop();
  });

  test("paused and stopped services stay so (and keep max-pause and message) across a redeploy and a proxy restart", async () => {
    const p = (restartable = await Proxy.start());
    const first = backend("survive-1");
    const second = backend("survive-2");
    const message = "Scheduled maintenance until midnight";
    await mustRun(p, ["deploy", "keep-paused", "--host", "paused.test", "--target", first.address]);
    await mustRun(p, ["deploy", "keep-stopped", "--host", "stopped.test", "--target", first.address]);
    expect((await p.cli(["pause", "keep-paused", "--max-pause", "500ms"])).code).toBe(0);
    expect((await p.cli(["stop", "keep-stopped", "--message", message])).code).toBe(0);

    const expectMaintenance = async (when: string) => {
      const services = await (async () => {
        const list = await p.cli(["list", "--json"]);
        expect(list.code).toBe(0);
        return (JSON.parse(list.stdout) as { services: { name: string; state: string }[] }).services;
      })();
      expect({ when, states: Object.fromEntries(services.map((s) => [s.name, s.state])) }).toEqual({
        when,
        states: { "keep-paused": "paused", "keep-stopped": "stopped" },
      });
      const text = await p.cli(["list"]);
      expect(text.stdout).toContain("(paused)");
      expect(text.stdout).toContain("(stopped)");
      // Paused: held, then 504 after the 500 ms max-pause.
      const sent = performance.now();
      const held = await request(p, "paused.test", "/echo");
      expect({ when, status: held.status }).toEqual({ when, status: 504 });
      expect(held.at - sent).toBeGreaterThanOrEqual(450);
      // Stopped: 503 with the message.
      const closed = await request(p, "stopped.test", "/echo");
      expect({ when, status: closed.status }).toEqual({ when, status: 503 });
      expect(closed.body).toContain(message);
      // The health-check path answers in both.
      expect((await p.fetch("/up", { host: "paused.test" })).status).toBe(200);
      expect((await p.fetch("/up", { host: "stopped.test" })).status).toBe(200);
    };

    // A redeploy to another target keeps the maintenance mode.
    await mustRun(p, ["deploy", "keep-paused", "--host", "paused.test", "--target", second.address]);
    await mustRun(p, ["deploy", "keep-stopped", "--host", "stopped.test", "--target", second.address]);
    await expectMaintenance("after redeploy");

    // So does a restart with the same state directory.
    expect(await restart(p)).toBe(0);
    await expectMaintenance("after restart");
    expect(first.requests + second.requests).toBe(0);

    expect((await p.cli(["resume", "keep-paused"])).code).toBe(0);
    expect((await p.cli(["resume", "keep-stopped"])).code).toBe(0);
    for (const host of ["paused.test", "stopped.test"]) {
      const answer = await request(p, host, "/echo");
      expect([answer.status, answer.backend]).toEqual([200, "survive-2"]);
    }
  }, TIMEOUT);
});
