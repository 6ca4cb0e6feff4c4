// WebSockets (README "Forwarding"), end to end: a real parachute process relaying between
// Bun's WebSocket client and a real Bun.serve WebSocket backend (and a raw
// socket where the handshake itself is under test).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { deadPort } from "./support/backend.ts";
import { RawConnection, headerValue, headerValues, requestHead } from "./support/raw-client.ts";
import { MB, RssSampler, mb, until } from "./support/rss.ts";
import { startSilentTarget, startWsBackend, WsClient, type WsBackend } from "./support/ws-backend.ts";
import { processAlive, Proxy } from "./support/proxy.ts";

let proxy: Proxy;
let app: WsBackend;
const clients: WsClient[] = [];

function connect(path: string, host: string, options: { cookie?: string; protocols?: string[] } = {}): WsClient {
  const client = new WsClient(`ws://127.0.0.1:${proxy.httpPort}${path}`, { host, ...options });
  clients.push(client);
  return client;
}

async function deploy(service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}`);
  return result;
}

beforeAll(async () => {
  app = startWsBackend("ws-app");
  proxy = await Proxy.start();
  await Promise.all([
    deploy("ws", ["--target", app.address, "--host", "ws.test"]),
    deploy("ws-prefixed", ["--target", app.address, "--host", "prefixed.test", "--path-prefix", "/ws"]),
    deploy("ws-logged", ["--target", app.address, "--host", "logged.test", "--log-request-header", "X-Trace-Id"]),
  ]);
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.ws.terminate?.();
  await proxy?.stop();
  await app?.stop();
});

describe("messages", () => {
  test("text messages are relayed both ways through the backend", async () => {
    const client = connect("/chat", "ws.test");
    await client.opened;
    expect(await client.ask("whoami")).toBe("ws-app");
    const text = "hello ünïcødé ✓ " + "x".repeat(70_000);
    expect(await client.ask(text)).toBe(text);
    client.close(1000);
  });

  test("binary frames arrive byte for byte (random bytes, large and tiny)", async () => {
    const client = connect("/bin", "ws.test");
    await client.opened;
    for (const size of [300_000, 3, 65_536]) {
      const bytes = new Uint8Array(size);
      for (let i = 0; i < size; i += 65_536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65_536)));
      client.ws.send(bytes);
      const echoed = await client.next();
      expect(echoed).toBeInstanceOf(ArrayBuffer);
      expect(Buffer.from(echoed as ArrayBuffer).equals(Buffer.from(bytes))).toBe(true);
    }
    client.close(1000);
  });

  test("1,000 messages sent back to back come back complete and in order", async () => {
    const client = connect("/order", "ws.test");
    await client.opened;
    for (let i = 0; i < 1000; i++) client.ws.send(`m${i}`);
    const got: string[] = [];
    for (let i = 0; i < 1000; i++) got.push((await client.next()) as string);
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i}`));
    client.close(1000);
  });

  test("a message the backend sends the moment it opens is not lost", async () => {
    const client = connect("/greet", "ws.test");
    await client.opened;
    expect(await client.next()).toBe("welcome");
    expect(await client.ask("whoami")).toBe("ws-app");
    client.close(1000);
  });

  test("a service's path prefix is stripped for WebSocket upgrades too", async () => {
    const client = connect("/ws/room/7?a=1", "prefixed.test");
    await client.opened;
    const seen = app.handshakes.at(-1)!;
    expect(new URL(seen.url).pathname + new URL(seen.url).search).toBe("/room/7?a=1");
    expect(await client.ask("whoami")).toBe("ws-app");
    client.close(1000);
  });

  test("the upgrade request reaches the backend with Host, cookie, path, query and X-Forwarded-*", async () => {
    const before = app.handshakes.length;
    const client = connect("/room/42?x=1&y=%20z", "ws.test", { cookie: "session=abc; theme=dark" });
    await client.opened;
    expect(app.handshakes.length).toBe(before + 1);
    const seen = app.handshakes.at(-1)!;
    expect(new URL(seen.url).pathname + new URL(seen.url).search).toBe("/room/42?x=1&y=%20z");
    expect(seen.headers.host).toBe("ws.test");
    expect(seen.headers.cookie).toBe("session=abc; theme=dark");
    expect(seen.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen.headers["x-forwarded-proto"]).toBe("http");
    expect(seen.headers["x-forwarded-host"]).toBe("ws.test");
    client.close(1000);
  });
});

describe("read targets", () => {
  test("WebSocket upgrades go to the writers, unless --read-target-websockets lets the read targets take them", async () => {
    const reader = startWsBackend("ws-reader");
    try {
      await deploy("ws-rw", ["--target", app.address, "--read-target", reader.address, "--host", "rw.ws.test"]);
      await deploy("ws-rw-readers", ["--target", app.address, "--read-target", reader.address, "--host", "rwr.ws.test", "--read-target-websockets"]);
      for (const [host, backend] of [["rw.ws.test", "ws-app"], ["rwr.ws.test", "ws-reader"], ["rw.ws.test", "ws-app"], ["rwr.ws.test", "ws-reader"]]) {
        const client = connect("/chat", host!);
        await client.opened;
        expect([host, await client.ask("whoami")]).toEqual([host, backend]);
        client.close(1000);
      }
    } finally {
      await reader.stop();
    }
  });
});

describe("subprotocols", () => {
  test("the subprotocol the backend picks is the one the client gets (not the client's first offer)", async () => {
    const client = connect("/proto", "ws.test", { protocols: ["chat.v1", "chat.v2"] });
    await client.opened;
    const seen = app.handshakes.at(-1)!;
    expect(seen.offered).toEqual(["chat.v1", "chat.v2"]);
    expect(seen.chosen).toBe("chat.v2");
    expect(client.ws.protocol).toBe("chat.v2");
    expect(await client.ask("still relaying")).toBe("still relaying");
    client.close(1000);
  });

  test("without an offered subprotocol none is selected", async () => {
    const client = connect("/proto", "ws.test");
    await client.opened;
    expect(app.handshakes.at(-1)!.offered).toEqual([]);
    expect(client.ws.protocol).toBe("");
    client.close(1000);
  });
});

describe("close codes", () => {
  test("a close code and reason from the backend (4001) reach the client", async () => {
    const client = connect("/close", "ws.test");
    await client.opened;
    client.ws.send("close:4001:bye from backend");
    const closed = await client.closed;
    expect(closed.code).toBe(4001);
    expect(closed.reason).toBe("bye from backend");
  });

  test("a close code and reason from the client (4002) reach the backend", async () => {
    const client = connect("/close", "ws.test");
    await client.opened;
    await client.ask("whoami");
    const id = app.handshakes.at(-1)!.id;
    client.close(4002, "client bye");
    const seen = await until("the backend to see the close", () => app.closes.find((c) => c.id === id));
    expect(seen.code).toBe(4002);
    expect(seen.reason).toBe("client bye");
  });

  test("closes without a code (1005) and abrupt disconnects (1006) on either side are mapped safely; the proxy keeps serving", async () => {
    // Client closes without a code: the backend gets a valid close, not a crash.
    const a = connect("/close", "ws.test");
    await a.opened;
    await a.ask("whoami");
    const aId = app.handshakes.at(-1)!.id;
    a.ws.close();
    const aSeen = await until("the backend to see a code-less client close", () => app.closes.find((c) => c.id === aId));
    expect([1000, 1005]).toContain(aSeen.code);

    // Client vanishes without a close frame.
    const b = connect("/close", "ws.test");
    await b.opened;
    await b.ask("whoami");
    const bId = app.handshakes.at(-1)!.id;
    b.ws.terminate();
    await until("the backend to see the abrupt client disconnect", () => app.closes.find((c) => c.id === bId));

    // Backend closes without a code, then a backend that drops the connection.
    const c = connect("/close", "ws.test");
    await c.opened;
    c.ws.send("close");
    expect([1000, 1005]).toContain((await c.closed).code);
    const d = connect("/close", "ws.test");
    await d.opened;
    d.ws.send("terminate");
    const dClosed = await d.closed;
    expect(dClosed.code).toBeGreaterThanOrEqual(1000);

    // None of that took the proxy down.
    expect(processAlive(proxy.pid)).toBe(true);
    const e = connect("/after", "ws.test");
    await e.opened;
    expect(await e.ask("whoami")).toBe("ws-app");
    e.close(1000);
  });
});

test(
  "backpressure: 50 MB pushed by the backend to a slow reader arrives complete and in order, the backend is held back, and proxy RSS grows < 64 MB",
  async () => {
    const TOTAL = 50 * MB;
    const FRAME = 64 * 1024;
    const client = connect("/push", "ws.test");
    await client.opened;
    await client.ask("whoami"); // warm the relay before the baseline
    let frames = 0;
    let framesOk = true;
    const countFrame = (data: ArrayBuffer) => {
      const view = new Uint8Array(data);
      if (view.length !== FRAME || view[0] !== frames % 251 || view[FRAME - 1] !== frames % 251) framesOk = false;
      frames++;
    };
    client.onBinary = countFrame;
    const rss = new RssSampler(() => proxy.processIds(), 50);
    const pushedBefore = app.pushed;
    client.ws.pause(); // stop reading from the socket: TCP backpressure towards the proxy
    client.ws.send(`push:${TOTAL}:${FRAME}`);

    // While the client reads nothing, the backend must be held back by backpressure.
    let last = -1;
    let stableSince = performance.now();
    await until(
      "the backend's push to stall",
      () => {
        const now = app.pushed - pushedBefore;
        if (now !== last) {
          last = now;
          stableSince = performance.now();
        }
        return now > 0 && performance.now() - stableSince > 700;
      },
      10_000,
      50,
    );
    const stalledAt = app.pushed - pushedBefore;
    expect(client.binaryBytes).toBe(0);
    expect(stalledAt).toBeLessThan(TOTAL * 0.6);

    // Now read slowly, at about 25 MB/s: whenever the client is ahead of that
    // rate it stops reading from its socket until it is back on schedule.
    const RATE = 25 * MB;
    const readStart = performance.now();
    let resumeTimer: ReturnType<typeof setTimeout> | undefined;
    client.onBinary = (data) => {
      countFrame(data);
      const due = (client.binaryBytes / RATE) * 1000 - (performance.now() - readStart);
      if (due > 5 && !client.ws.isPaused) {
        client.ws.pause();
        resumeTimer = setTimeout(() => client.ws.resume(), due);
      }
    };
    client.ws.resume();
    await until("all 50 MB to arrive", () => client.binaryBytes >= TOTAL, 30_000, 50);
    clearTimeout(resumeTimer);
    const readSeconds = (performance.now() - readStart) / 1000;
    client.ws.resume();
    const report = rss.stop();
    console.log(
      `websocket 50 MB slow reader: backend stalled at ${mb(stalledAt)} while the client was paused; read in ${readSeconds.toFixed(1)} s; ` +
        `proxy RSS ${mb(report.baseline)} -> peak ${mb(report.peak)} (growth ${mb(report.growth)}, ${report.samples} samples)`,
    );
    expect(client.binaryBytes).toBe(TOTAL);
    expect(frames).toBe(TOTAL / FRAME);
    expect(framesOk).toBe(true);
    expect(app.dropped).toBe(0);
    expect(report.growth).toBeLessThan(64 * MB);
    client.close(1000);
  },
  60_000,
);

test(
  "backpressure the other way: a client sending 100 MB to a backend that stops reading is held back; everything arrives once it reads again",
  async () => {
    // Socket buffers along the way (client, loopback both hops, the relay's
    // 4 MB high-water mark) hold 15-45 MB on a busy machine: the body is
    // large enough that being held back is unmistakable.
    const TOTAL = 100 * MB;
    const FRAME = 64 * 1024;
    const client = connect("/sink", "ws.test");
    await client.opened;
    await client.ask("whoami");
    const server = app.sockets.get(app.handshakes.at(-1)!.id)!;
    const sunkBefore = app.sunk;
    server.pause(); // the backend stops reading: TCP backpressure towards the proxy
    const rss = new RssSampler(() => proxy.processIds(), 50);

    // A well-behaved sender: it sends only while its own send buffer is small.
    const frames = Array.from({ length: 251 }, (_, i) => new Uint8Array(FRAME).fill(i));
    let sent = 0;
    let seq = 0;
    let stop = false;
    const sender = (async () => {
      while (sent < TOTAL && !stop) {
        if (client.ws.bufferedAmount > 4 * MB) {
          await Bun.sleep(5);
          continue;
        }
        client.ws.send(frames[seq % 251]!);
        seq++;
        sent += FRAME;
      }
    })();
    let last = -1;
    let stableSince = performance.now();
    await until(
      "the client's sending to stall",
      () => {
        if (sent !== last) {
          last = sent;
          stableSince = performance.now();
        }
        return performance.now() - stableSince > 700;
      },
      10_000,
      50,
    );
    const stalledAt = sent;
    expect(app.sunk - sunkBefore).toBe(0);
    expect(stalledAt).toBeLessThan(TOTAL * 0.6);

    server.resume();
    await sender;
    await until("all 100 MB to reach the backend", () => app.sunk - sunkBefore >= TOTAL, 30_000, 50);
    stop = true;
    const report = rss.stop();
    console.log(
      `websocket 100 MB to a paused backend: client held back at ${mb(stalledAt)}; ` +
        `proxy RSS ${mb(report.baseline)} -> peak ${mb(report.peak)} (growth ${mb(report.growth)})`,
    );
    expect(app.sunk - sunkBefore).toBe(TOTAL);
    expect(app.sunkOk).toBe(true);
    expect(report.growth).toBeLessThan(64 * MB);
    client.close(1000);
  },
  60_000,
);

test(
  "a deploy closes the old target's open WebSockets at once (1001, so clients reconnect) instead of holding the deploy for --drain-timeout",
  async () => {
    const oldApp = startWsBackend("ws-old");
    const newApp = startWsBackend("ws-new");
    try {
      await deploy("drainws", ["--target", oldApp.address, "--host", "drain.test"]);
      const client = connect("/live", "drain.test");
      await client.opened;
      expect(await client.ask("whoami")).toBe("ws-old");

      const mark = proxy.logMark();
      const result = await proxy.cli(["deploy", "drainws", "--target", newApp.address, "--host", "drain.test", "--drain-timeout", "20s"]);
      expect(result.code).toBe(0);
      // The deploy did not wait for the WebSocket: a drain that waited until
      // the 20 s drain timeout would have cancelled it there (cancelled: 1).
      const drained = await proxy.waitForLog((l) => l.msg === "Drained" && l.service === "drainws", 5000, mark);
      expect(drained.cancelled).toBe(0);

      const closed = await client.closed;
      expect(closed.code).toBe(1001);
      const backendSaw = await until("the old backend to see its socket closed", () => oldApp.closes[0]);
      expect(backendSaw.code).toBe(1001);
      expect(oldApp.open).toBe(0);

      // The client reconnects, to the new target.
      const fresh = connect("/live", "drain.test");
      await fresh.opened;
      expect(await fresh.ask("whoami")).toBe("ws-new");
      fresh.close(1000);
    } finally {
      await oldApp.stop();
      await newApp.stop();
    }
  },
  30_000,
);

test("an upgrade to a dead target is answered 502 (HTML) and the client is never upgraded", async () => {
  const port = await deadPort();
  await deploy("deadws", ["--target", `127.0.0.1:${port}`, "--host", "deadws.test", "--force"]);

  const { head, body } = await rawUpgrade("deadws.test");
  expect(head.status).toBe(502);
  expect(headerValue(head, "upgrade")).toBeUndefined();
  expect(headerValue(head, "sec-websocket-accept")).toBeUndefined();
  expect(headerValue(head, "content-type")).toContain("text/html");
  expect(body).toContain("502");

  // Bun's own client never reaches the open state either.
  const client = connect("/socket", "deadws.test");
  await expect(client.opened).rejects.toThrow();
  await client.closed;
  expect(client.ws.readyState).toBe(WebSocket.CLOSED);
}, 15_000);

/** Sends a WebSocket upgrade request on a raw connection and reads the answer's head and body. */
async function rawUpgrade(host: string, path = "/socket") {
  const conn = await RawConnection.open(proxy.httpPort);
  try {
    conn.write(
      requestHead("GET", path, [
        ["Host", host],
        ["Upgrade", "websocket"],
        ["Connection", "Upgrade"],
        ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
        ["Sec-WebSocket-Version", "13"],
      ]),
    );
    const head = await conn.readHead(10_000);
    const body = head.status === 101 ? "" : (await conn.readBody(head)).toString();
    return { head, body };
  } finally {
    conn.close();
  }
}

test("an upgrade the target does not answer within --target-timeout gets 504 (not upgraded)", async () => {
  const silent = startSilentTarget();
  try {
    await deploy("silentws", ["--target", silent.address, "--host", "silentws.test", "--force", "--target-timeout", "500ms"]);
    const started = performance.now();
    const { head, body } = await rawUpgrade("silentws.test");
    expect(silent.connections).toBeGreaterThan(0);
    expect(head.status).toBe(504);
    expect(headerValue(head, "sec-websocket-accept")).toBeUndefined();
    expect(body).toContain("504");
    expect(performance.now() - started).toBeLessThan(3000);
  } finally {
    silent.stop();
  }
}, 15_000);

test("an app that refuses the upgrade: its status reaches the client, not a proxy 502", async () => {
  const { head } = await rawUpgrade("ws.test", "/forbidden");
  expect(head.status).toBe(403);
});

test("an app that refuses the upgrade with its own response (403) is passed through untouched", async () => {
  const { head, body } = await rawUpgrade("ws.test", "/forbidden");
  expect(head.status).toBe(403);
  expect(headerValue(head, "x-app")).toBe("ws-app");
  expect(body).toBe("no entry");
});

test("a refusal with a large body and several Set-Cookie headers reaches the client whole", async () => {
  const { head, body } = await rawUpgrade("ws.test", "/login-first");
  expect(head.status).toBe(302);
  expect(headerValue(head, "location")).toBe("/login");
  expect(headerValues(head, "set-cookie")).toEqual(["a=1; Path=/", "b=2; Path=/"]);
  expect(headerValues(head, "date")).toHaveLength(1);
  expect(body).toBe("<p>sign in</p>".repeat(20_000));
});

test("a proxied WebSocket is logged as a `Request` line with the documented fields and the configured req_<header> fields", async () => {
  const client = new WsClient(`ws://127.0.0.1:${proxy.httpPort}/logged-socket?room=9`, {
    host: "logged.test",
    headers: { "x-trace-id": "trace-ws-1", "user-agent": "ws-test-agent" },
  });
  clients.push(client);
  await client.opened;
  expect(await client.ask("whoami")).toBe("ws-app");
  client.close(1000);
  await client.closed;
  const line = await proxy.waitForLog((l) => l.msg === "Request" && l.path === "/logged-socket", 5000);
  const required = [
    "time", "level", "msg", "service", "target", "host", "method", "path", "query", "status", "duration_ms",
    "request_id", "client_addr", "remote_addr", "user_agent", "req_content_length", "resp_content_length", "proto", "scheme",
  ];
  expect(required.filter((field) => !(field in line))).toEqual([]);
  expect(line).toMatchObject({ service: "ws-logged", host: "logged.test", method: "GET", query: "room=9", user_agent: "ws-test-agent" });
  expect(line.req_x_trace_id).toBe("trace-ws-1");
});

test(
  "SIGTERM closes open WebSockets with 1001 on both sides and exits at once, gracefully",
  async () => {
    const own = await Proxy.start();
    const backend = startWsBackend("ws-term");
    try {
      const deployed = await own.cli(["deploy", "term", "--target", backend.address, "--host", "term.test"]);
      expect(deployed.code).toBe(0);
      const client = new WsClient(`ws://127.0.0.1:${own.httpPort}/live`, { host: "term.test" });
      clients.push(client);
      await client.opened;
      expect(await client.ask("whoami")).toBe("ws-term");

      const mark = own.logMark();
      const exited = own.kill("SIGTERM");
      expect((await client.closed).code).toBe(1001);
      expect(await exited).toBe(0);
      // Not held open until the 10 s grace period ends: a drain that reached
      // it cuts what is left and logs graceful: false.
      expect((await own.waitForLog((l) => l.msg === "Server stopped", 1000, mark)).graceful).toBe(true);
      const backendSaw = await until("the backend to see its socket closed", () => backend.closes[0]);
      expect(backendSaw.code).toBe(1001);
    } finally {
      await own.stop();
      await backend.stop();
    }
  },
  20_000,
);

test("pause closes open WebSockets with 1001 at once instead of waiting out --drain-timeout (20 s; the test has 15)", async () => {
  await deploy("ws-paused", ["--target", app.address, "--host", "paused.test"]);
  const open = connect("/chat", "paused.test");
  await open.opened;
  const paused = await proxy.cli(["pause", "ws-paused", "--drain-timeout", "20s"]);
  expect(paused.code).toBe(0);
  expect((await open.closed).code).toBe(1001);
  expect((await proxy.cli(["resume", "ws-paused"])).code).toBe(0);
  const again = connect("/chat", "paused.test");
  await again.opened;
  expect(await again.ask("whoami")).toBe("ws-app");
  again.close(1000);
}, 15_000);
