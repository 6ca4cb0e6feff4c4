// run --publish-health-check (README "Published health check"), end to end:
// the proxy answers /.parachute/health and /.parachute/<service>/health on
// every host; at a graceful stop it answers 503 for the grace while it goes on
// serving, then closes; the same in every worker; without the flag the paths
// are the apps'.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startBackend, type Backend } from "./support/backend.ts";
import { Proxy, SLOW_TEST, waitFor } from "./support/proxy.ts";

let app: Backend;

beforeAll(() => {
  app = startBackend("health-app");
});

afterAll(async () => {
  await app?.stop();
});

async function deploy(proxy: Proxy, service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, "--target", app.address, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed:\n${result.stderr}`);
}

const status = (proxy: Proxy, path: string, host = "anything.example") =>
  proxy.fetch(path, { host, headers: { connection: "close" } }).then(
    async (res) => {
      await res.arrayBuffer();
      return res.status;
    },
    () => 0,
  );

describe("with --publish-health-check", () => {
  let proxy: Proxy;

  beforeAll(async () => {
    proxy = await Proxy.start({ args: ["--publish-health-check", "--workers", "1"] });
    await deploy(proxy, "web", ["--host", "web.test"]);
  }, 30_000);

  afterAll(async () => {
    await proxy?.stop();
  });

  test("/.parachute/health is 200 on every host, routed or not, and the app never sees it", async () => {
    const seen = app.requests;
    for (const host of ["web.test", "unknown.test", "127.0.0.1"]) {
      const res = await proxy.fetch("/.parachute/health", { host });
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(await res.text()).toBe("OK\n");
    }
    expect(app.requests).toBe(seen);
  });

  test("/.parachute/SERVICE/health follows the service's targets: 200 healthy, 503 when none is, 404 for no such service", async () => {
    expect(await status(proxy, "/.parachute/web/health")).toBe(200);
    expect(await status(proxy, "/.parachute/nope/health")).toBe(404);
    app.setHealth(500);
    try {
      await waitFor("the service health to turn 503", async () => (await status(proxy, "/.parachute/web/health")) === 503);
    } finally {
      app.setHealth(200);
    }
    await waitFor("the service health to come back", async () => (await status(proxy, "/.parachute/web/health")) === 200);
  }, SLOW_TEST);

  test("other paths under /.parachute/ go to the app as usual", async () => {
    const res = await proxy.fetch("/.parachute/other", { host: "web.test" });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { url: string }).url).toContain("/.parachute/other");
  });
});

describe("a graceful stop answers 503 first, while traffic goes on, then closes", () => {
  for (const workers of ["1", "2"]) {
    test(`with --workers ${workers}`, async () => {
      const proxy = await Proxy.start({ args: ["--publish-health-check", "--publish-health-check-grace", "3s", "--workers", workers] });
      try {
        await deploy(proxy, "web", ["--host", "web.test"]);
        expect(await status(proxy, "/.parachute/health")).toBe(200);
        const mark = proxy.logMark();
        const exited = proxy.kill("SIGTERM");
        const leaving = await proxy.waitForLog((l) => l.msg === "Leaving: the published health check answers 503", 5000, mark);
        expect(leaving.closing_in).toBe("3s");
        // Every data plane says 503 (new connections may reach any worker), and the app is still served.
        await waitFor("the health check to answer 503", async () => (await status(proxy, "/.parachute/health")) === 503);
        for (let i = 0; i < 4; i++) expect(await status(proxy, "/.parachute/health")).toBe(503);
        expect(await status(proxy, "/echo", "web.test")).toBe(200);
        expect(await exited).toBe(0);
        expect(await status(proxy, "/.parachute/health")).toBe(0);
      } finally {
        await proxy.stop();
      }
    }, SLOW_TEST);
  }
});

test("without the flag /.parachute/health is the app's path like any other", async () => {
  const proxy = await Proxy.start({ args: ["--workers", "1"] });
  try {
    await deploy(proxy, "web", []);
    const res = await proxy.fetch("/.parachute/health");
    expect(res.status).toBe(200);
    expect(((await res.json()) as { backend: string }).backend).toBe("health-app");
  } finally {
    await proxy.stop();
  }
}, SLOW_TEST);
