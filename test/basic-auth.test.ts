// `deploy --basic-auth-file` (README "Basic auth"), end to end: a real
// parachute in front of a real backend, with htpasswd files of real bcrypt and
// argon2 hashes. Without valid credentials a request gets 401 and a challenge
// and the app never sees it, over HTTP/1.1, HTTPS and HTTP/2; health checks
// pass (the ACME challenges parachute answers come before any service); bad files fail the deploy with nothing changed;
// the credentials survive a restart without the file, and workers enforce them.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { startBackend, type Backend } from "./support/backend.ts";
import { deployOk } from "./support/helpers.ts";
import { buildRequest, header, rawRequest } from "./support/net.ts";
import { freePort, Proxy, runCli, tempDir } from "./support/proxy.ts";
import { createTestCa, curlHttps, httpsPortOf, restart, type TestCa } from "./support/tls-tools.ts";
import { startWsBackend, WsClient, type WsBackend } from "./support/ws-backend.ts";

// Real processes, a real CA and real password hashes: more room than the 5 s default, still bounded.
setDefaultTimeout(40_000);

const fast = ["--health-check-interval", "100ms"];
const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString("base64")}`;
const ALICE = basic("alice:wonderland"); // bcrypt entry
const BOB = basic("bob:builder"); // argon2id entry

let proxy: Proxy;
let app: Backend;
let dir: string;
let usersFile: string;
let ca: TestCa;
let httpsPort = 0;
let wsApp: WsBackend;

/** Everything the app has been sent on `path` (the backend records every request but its health checks). */
const seenOn = (p: string) => app.seen.filter((r) => new URL(r.url).pathname === p);

function get(p: string, host: string, authorization?: string): Promise<Response> {
  return proxy.fetch(p, { host, headers: authorization ? { authorization } : {} });
}

beforeAll(async () => {
  dir = tempDir("parachute-basic-auth-");
  usersFile = path.join(dir, "users.htpasswd");
  // Low costs keep the test quick; the proxy verifies whatever cost the file says.
  const alice = await Bun.password.hash("wonderland", { algorithm: "bcrypt", cost: 5 });
  const bob = await Bun.password.hash("builder", { algorithm: "argon2id", memoryCost: 1024, timeCost: 2 });
  fs.writeFileSync(usersFile, `# staging users\nalice:${alice.replace(/^\$2b\$/, "$2y$")}\nbob:${bob}\n`);
  ca = await createTestCa(path.join(dir, "ca"));
  const cert = await ca.issue("secure", ["secure.test"]);
  app = startBackend("app");
  wsApp = startWsBackend("ws-app");
  const [httpPort, wantedHttps] = [await freePort(), await freePort()];
  proxy = await Proxy.start({ args: ["--workers", "1", "--http-port", String(httpPort), "--https-port", String(wantedHttps)] });
  httpsPort = httpsPortOf(proxy.logs);
  await Promise.all([
    deployOk(proxy, "guarded", ["--target", app.address, "--host", "guarded.test", "--basic-auth-file", usersFile, ...fast]),
    deployOk(proxy, "secure", [
      "--target",
      app.address,
      "--host",
      "secure.test",
      "--tls",
      "--tls-certificate-path",
      cert.cert,
      "--tls-private-key-path",
      cert.key,
      "--basic-auth-file",
      usersFile,
      ...fast,
    ]),
    deployOk(proxy, "open", ["--target", app.address, "--host", "open.test", ...fast]),
    deployOk(proxy, "ws", ["--target", wsApp.address, "--host", "ws.test", "--basic-auth-file", usersFile, ...fast]),
  ]);
});

afterAll(async () => {
  await proxy?.stop();
  await app?.stop();
  await wsApp?.stop();
});

describe("over HTTP/1.1", () => {
  test("without credentials: 401 with a Basic challenge naming the service as realm, and the app never sees it", async () => {
    const res = await get("/no-credentials", "guarded.test");
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Basic realm="guarded", charset="UTF-8"');
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(await res.text()).toContain("401 Unauthorized");
    expect(seenOn("/no-credentials")).toHaveLength(0);
  });

  test("a wrong password, an unknown user or another scheme: 401, and the app never sees them", async () => {
    for (const authorization of [basic("alice:guess"), basic("mallory:wonderland"), "Bearer abc", "Basic !!!"]) {
      const res = await get("/wrong", "guarded.test", authorization);
      await res.body?.cancel();
      expect(res.status, authorization).toBe(401);
      expect(res.headers.get("www-authenticate")).toStartWith("Basic realm=");
    }
    expect(seenOn("/wrong")).toHaveLength(0);
  });

  test("a bcrypt user and an argon2 user pass; the app gets the request with its Authorization header", async () => {
    for (const authorization of [ALICE, BOB]) {
      const res = await get("/right", "guarded.test", authorization);
      expect(res.status).toBe(200);
      const echo = (await res.json()) as { headers: Record<string, string> };
      expect(echo.headers.authorization).toBe(authorization);
    }
    expect(seenOn("/right")).toHaveLength(2);
  });

  test("a verified credential keeps passing (remembered), a wrong one keeps failing", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      for (const authorization of [ALICE, basic("alice:guess")]) {
        const res = await get("/repeat", "guarded.test", authorization);
        await res.body?.cancel();
        statuses.push(res.status);
      }
    }
    expect(statuses).toEqual([200, 401, 200, 401, 200, 401, 200, 401, 200, 401]);
  });

  test("a refused request is logged with status 401", async () => {
    const id = `auth-${crypto.randomUUID()}`;
    const res = await proxy.fetch("/logged", { host: "guarded.test", headers: { "x-request-id": id } });
    await res.body?.cancel();
    const line = await proxy.waitForLog((l) => l.msg === "Request" && l.request_id === id);
    expect(line.status).toBe(401);
    expect(line.service).toBe("guarded");
    expect(line.error).toBe("unauthorized");
  });

  test("health checks pass without credentials: the proxy's own, and GET /up through the proxy", async () => {
    const before = app.healthChecks;
    const res = await get("/up", "guarded.test");
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok");
    expect(app.healthChecks).toBeGreaterThan(before);
    // A write to the health-check path is an ordinary request.
    const post = await proxy.fetch("/up", { host: "guarded.test", method: "POST" });
    await post.body?.cancel();
    expect(post.status).toBe(401);
  });

  test("the ACME challenge path is no way around it: a token parachute does not answer needs credentials like any path", async () => {
    for (const method of ["GET", "POST"]) {
      const res = await proxy.fetch("/.well-known/acme-challenge/app-token", { host: "guarded.test", method, ...(method === "POST" ? { body: "x" } : {}) });
      await res.body?.cancel();
      expect(res.status, method).toBe(401);
    }
    expect(seenOn("/.well-known/acme-challenge/app-token")).toHaveLength(0);
    const allowed = await get("/.well-known/acme-challenge/app-token", "guarded.test", ALICE);
    await allowed.body?.cancel();
    expect(allowed.status).toBe(200);
    expect(seenOn("/.well-known/acme-challenge/app-token")).toHaveLength(1);
  });

  test("a WebSocket handshake needs credentials like any request", async () => {
    const handshakes = wsApp.handshakes.length;
    const upgrade: [string, string][] = [
      ["Host", "ws.test"],
      ["Upgrade", "websocket"],
      ["Connection", "Upgrade"],
      ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
      ["Sec-WebSocket-Version", "13"],
    ];
    const raw = await rawRequest(proxy.httpPort, buildRequest("GET", "/chat", upgrade));
    expect(raw.status).toBe(401);
    expect(header(raw, "www-authenticate")).toBe('Basic realm="ws", charset="UTF-8"');
    const refused = new WsClient(`ws://127.0.0.1:${proxy.httpPort}/chat`, { host: "ws.test" });
    await expect(refused.opened).rejects.toThrow();
    expect(wsApp.handshakes.length).toBe(handshakes);
    const allowed = new WsClient(`ws://127.0.0.1:${proxy.httpPort}/chat`, { host: "ws.test", headers: { authorization: ALICE } });
    await allowed.opened;
    expect(await allowed.ask("whoami")).toBe("ws-app");
    allowed.close(1000);
    expect(wsApp.handshakes.length).toBe(handshakes + 1);
  });

  test("a service without --basic-auth-file stays open", async () => {
    const res = await get("/open", "open.test");
    await res.body?.cancel();
    expect(res.status).toBe(200);
  });
});

describe("over HTTPS", () => {
  test("HTTP is redirected to HTTPS before any credentials are asked for", async () => {
    const res = await get("/page", "secure.test");
    expect(res.status).toBe(301);
    expect(res.headers.get("location")).toBe(`https://secure.test:${httpsPort}/page`);
    expect(res.headers.get("www-authenticate")).toBeNull();
  });

  for (const [label, http1] of [
    ["HTTP/1.1", true],
    ["HTTP/2", false],
  ] as const) {
    test(`${label}: 401 with a challenge without credentials, the app's answer with them`, async () => {
      const refused = await curlHttps("secure.test", httpsPort, `/tls-${label}`, ca.certFile, { http1 });
      expect(refused.httpVersion).toBe(http1 ? "1.1" : "2");
      expect(refused.status).toBe(401);
      expect(refused.headers["www-authenticate"]).toBe('Basic realm="secure", charset="UTF-8"');
      expect(seenOn(`/tls-${label}`)).toHaveLength(0);
      const allowed = await curlHttps("secure.test", httpsPort, `/tls-${label}`, ca.certFile, { http1, headers: { Authorization: BOB } });
      expect(allowed.status).toBe(200);
      expect(JSON.parse(allowed.body).headers.authorization).toBe(BOB);
      expect(seenOn(`/tls-${label}`)).toHaveLength(1);
    });
  }
});

describe("bad files fail the deploy and nothing changes", () => {
  async function refused(args: string[], message: string) {
    const stateBefore = fs.readFileSync(proxy.stateFile, "utf8");
    const result = await proxy.cli(["deploy", "guarded", "--target", app.address, "--host", "guarded.test", ...fast, ...args]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
    expect(fs.readFileSync(proxy.stateFile, "utf8")).toBe(stateBefore);
    // Still guarded by the old file.
    const res = await get("/still", "guarded.test");
    await res.body?.cancel();
    expect(res.status).toBe(401);
  }

  test("a missing file", async () => {
    const missing = path.join(dir, "nope.htpasswd");
    await refused(["--basic-auth-file", missing], `cannot read basic auth file ${missing}: ENOENT`);
  });

  test("an MD5 (apr1) entry, naming the file and line", async () => {
    const md5 = path.join(dir, "md5.htpasswd");
    fs.writeFileSync(md5, `${fs.readFileSync(usersFile, "utf8")}carol:$apr1$3LnR0Hcz$Y9TPlMqm1vdPaWFeXRZpB/\n`);
    await refused(["--basic-auth-file", md5], `${md5} line 4: user "carol" has an MD5 (apr1) hash; only bcrypt (htpasswd -B) and argon2 hashes are accepted`);
  });

  test("a plaintext password", async () => {
    const plain = path.join(dir, "plain.htpasswd");
    fs.writeFileSync(plain, "alice:wonderland\n");
    await refused(["--basic-auth-file", plain], `${plain} line 1: user "alice" has no hash`);
  });

  test("an empty file name", async () => {
    await refused(["--basic-auth-file", ""], "--basic-auth-file: empty file name");
  });

  test("an empty file", async () => {
    const empty = path.join(dir, "empty.htpasswd");
    fs.writeFileSync(empty, "\n");
    await refused(["--basic-auth-file", empty], `${empty}: no user:hash line`);
  });
});

test("a relative path is the CLI's working directory's", async () => {
  const relative = await runCli(
    ["deploy", "relative", "--target", app.address, "--host", "relative.test", "--basic-auth-file", "users.htpasswd", ...fast, "--socket", proxy.socket],
    {},
    { cwd: dir },
  );
  expect(relative.code, relative.stderr).toBe(0);
  const res = await get("/rel", "relative.test", ALICE);
  await res.body?.cancel();
  expect(res.status).toBe(200);
});

test("a redeploy without --basic-auth-file opens the service; one with it closes it again", async () => {
  await deployOk(proxy, "toggle", ["--target", app.address, "--host", "toggle.test", "--basic-auth-file", usersFile, ...fast]);
  expect((await get("/t", "toggle.test")).status).toBe(401);
  await deployOk(proxy, "toggle", ["--target", app.address, "--host", "toggle.test", ...fast]);
  expect((await get("/t", "toggle.test")).status).toBe(200);
});

test("after a restart the credentials read at deploy still hold, without the file; the state keeps hashes only", async () => {
  const copy = path.join(dir, "moved.htpasswd");
  fs.copyFileSync(usersFile, copy);
  await deployOk(proxy, "moved", ["--target", app.address, "--host", "moved.test", "--basic-auth-file", copy, ...fast]);
  fs.rmSync(copy);
  const state = fs.readFileSync(proxy.stateFile, "utf8");
  expect(state).toContain("$argon2id$");
  expect(state).not.toContain("wonderland");
  expect(state).not.toContain("builder");
  process.kill(proxy.pid, "SIGKILL");
  await proxy.exited;
  await restart(proxy);
  expect((await get("/after", "moved.test")).status).toBe(401);
  const res = await get("/after", "moved.test", ALICE);
  await res.body?.cancel();
  expect(res.status).toBe(200);
});

test("workers enforce the credentials the control plane read", async () => {
  const workers = await Proxy.start({ args: ["--workers", "2"] });
  try {
    await deployOk(workers, "guarded", ["--target", app.address, "--host", "guarded.test", "--basic-auth-file", usersFile, ...fast]);
    const served = new Set<unknown>();
    // Fresh connections, so both workers take some; each must refuse and admit alike.
    for (let i = 0; i < 12; i++) {
      for (const [authorization, status] of [
        [undefined, 401],
        [BOB, 200],
      ] as const) {
        const id = `w-${crypto.randomUUID()}`;
        const res = await workers.fetch("/w", { host: "guarded.test", headers: { connection: "close", "x-request-id": id, ...(authorization ? { authorization } : {}) } });
        await res.body?.cancel();
        expect(res.status).toBe(status);
        served.add((await workers.waitForLog((l) => l.msg === "Request" && l.request_id === id)).worker);
      }
    }
    expect([...served].every((w) => w === 1 || w === 2)).toBe(true);
  } finally {
    await workers.stop();
  }
});
