// Errors the proxy produces (README "Forwarding") and --error-pages / --log-*-header,
// end to end: built-in HTML pages with the right status, custom
// <status>.html pages per service, a missing pages directory failing the
// deploy without changing anything, the app's own errors passing untouched,
// and extra header fields in the `Request` log line.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { deadPort } from "./support/backend.ts";
import { Proxy, tempDir } from "./support/proxy.ts";
import { RawConnection, requestHead } from "./support/raw-client.ts";
import { startStreamBackend, type StreamBackend } from "./support/stream-backend.ts";

let proxy: Proxy;
let app: StreamBackend;
let pagesDir: string;
let partialDir: string;
const CUSTOM: Record<number, string> = {};

async function deploy(service: string, args: string[]) {
  const result = await proxy.cli(["deploy", service, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}`);
}

async function page(pathAndQuery: string, host: string, init: RequestInit = {}) {
  const res = await proxy.fetch(pathAndQuery, { ...init, host });
  return { status: res.status, type: res.headers.get("content-type") ?? "", body: await res.text() };
}

async function stateOf(): Promise<{ list: string; state: string }> {
  const list = await proxy.cli(["list", "--json"]);
  expect(list.code).toBe(0);
  const file = path.join(proxy.stateDir, "parachute.state");
  return { list: list.stdout, state: fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "" };
}

const MESSAGE = "Back at 5 & <soon>";
/** The message as HTML text: `&` and `<` escaped (named or numeric entities). */
const ESCAPED = /Back at 5 (&amp;|&#38;|&#x26;) (&lt;|&#60;|&#x3c;)soon(&gt;|&#62;|&#x3e;|>)/i;

beforeAll(async () => {
  pagesDir = tempDir("parachute-pages-");
  for (const status of [413, 502, 503, 504]) {
    CUSTOM[status] = `<!doctype html><html><body><h1>custom ${status} page</h1><p>marker-${status}-${crypto.randomUUID()}</p></body></html>\n`;
    fs.writeFileSync(path.join(pagesDir, `${status}.html`), CUSTOM[status]!);
  }
  partialDir = tempDir("parachute-pages-partial-");
  fs.writeFileSync(path.join(partialDir, "502.html"), "<html><body>partial 502</body></html>");

  app = startStreamBackend();
  const dead = `127.0.0.1:${await deadPort()}`;
  proxy = await Proxy.start();
  const limits = ["--target-timeout", "500ms", "--max-request-body", "1k"];
  await Promise.all([
    deploy("plain", ["--target", app.address, "--host", "plain.test", ...limits]),
    deploy("plain-dead", ["--target", dead, "--host", "plain-dead.test", "--force"]),
    deploy("plain-stopped", ["--target", app.address, "--host", "plain-stopped.test"]),
    deploy("custom", ["--target", app.address, "--host", "custom.test", ...limits, "--error-pages", pagesDir]),
    deploy("custom-dead", ["--target", dead, "--host", "custom-dead.test", "--force", "--error-pages", pagesDir]),
    deploy("custom-stopped", ["--target", app.address, "--host", "custom-stopped.test", "--error-pages", pagesDir]),
    deploy("partial", ["--target", app.address, "--host", "partial.test", "--target-timeout", "500ms", "--error-pages", partialDir]),
    deploy("logged", [
      "--target", app.address, "--host", "logged.test",
      "--log-request-header", "X-Trace-Id", "--log-request-header", "user-agent",
      "--log-response-header", "Content-Type,X-Not-Sent",
    ]),
  ]);
  for (const service of ["plain-stopped", "custom-stopped"]) {
    const stopped = await proxy.cli(["stop", service, "--message", MESSAGE]);
    if (stopped.code !== 0) throw new Error(`stop ${service} failed: ${stopped.stderr}`);
  }
}, 30_000);

afterAll(async () => {
  await proxy?.stop();
  await app?.stop();
  fs.rmSync(pagesDir, { recursive: true, force: true });
  fs.rmSync(partialDir, { recursive: true, force: true });
});

function expectBuiltin(p: { status: number; type: string; body: string }, status: number) {
  expect(p.status).toBe(status);
  expect(p.type).toContain("text/html");
  expect(p.body.toLowerCase()).toContain("<html");
  expect(p.body).toContain(String(status));
  expect(p.body).not.toContain("custom ");
}

describe("built-in error pages", () => {
  test("404 when no service matches the host (never per service)", async () => {
    expectBuiltin(await page("/anything", "nobody.test"), 404);
  });

  test("502 when the target refuses the connection", async () => {
    expectBuiltin(await page("/", "plain-dead.test"), 502);
  });

  test("503 for a stopped service, with its message (HTML-escaped)", async () => {
    const p = await page("/", "plain-stopped.test");
    expectBuiltin(p, 503);
    expect(p.body).toMatch(ESCAPED);
    expect(p.body).not.toContain("<soon>");
  });

  test("504 when the target does not answer within --target-timeout", async () => {
    // The app would answer 200 at 3 s: the 504 came before.
    const p = await page("/slow?ms=3000", "plain.test");
    expectBuiltin(p, 504);
  });

  test("413 when the body is over --max-request-body", async () => {
    expectBuiltin(await page("/upload", "plain.test", { method: "POST", body: "x".repeat(5000) }), 413);
  });
});

describe("custom error pages (--error-pages DIR)", () => {
  test("502, 503, 504 and 413 are served from DIR/<status>.html with their status", async () => {
    const cases: [number, Promise<{ status: number; type: string; body: string }>][] = [
      [502, page("/", "custom-dead.test")],
      [503, page("/", "custom-stopped.test")],
      [504, page("/slow?ms=3000", "custom.test")],
      [413, page("/upload", "custom.test", { method: "POST", body: "x".repeat(5000) })],
    ];
    for (const [status, pending] of cases) {
      const p = await pending;
      expect(p.status).toBe(status);
      expect(p.type).toContain("text/html");
      expect(p.body).toBe(CUSTOM[status]!);
    }
  });

  test("a WebSocket upgrade to a dead target gets the custom 502 page too", async () => {
    const conn = await RawConnection.open(proxy.httpPort);
    try {
      conn.write(
        requestHead("GET", "/socket", [
          ["Host", "custom-dead.test"],
          ["Upgrade", "websocket"],
          ["Connection", "Upgrade"],
          ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
          ["Sec-WebSocket-Version", "13"],
        ]),
      );
      const head = await conn.readHead();
      expect(head.status).toBe(502);
      expect((await conn.readBody(head)).toString()).toBe(CUSTOM[502]!);
    } finally {
      conn.close();
    }
  });

  test("a relative DIR is read from the directory the command ran in, not the server's", async () => {
    const result = await proxy.cli(
      ["deploy", "relative", "--target", `127.0.0.1:${await deadPort()}`, "--host", "relative.test", "--force", "--error-pages", path.basename(pagesDir)],
      {},
      { cwd: path.dirname(pagesDir) },
    );
    try {
      expect(result.stderr).not.toContain("Error");
      const p = await page("/", "relative.test");
      expect(p.status).toBe(502);
      expect(p.body).toBe(CUSTOM[502]!);
    } finally {
      await proxy.cli(["remove", "relative"]);
    }
  });

  test("a status without a page in DIR falls back to the built-in page", async () => {
    expectBuiltin(await page("/slow?ms=3000", "partial.test"), 504);
  });

  test("the app's own error responses pass through untouched, custom pages or not", async () => {
    for (const host of ["custom.test", "plain.test"]) {
      for (const status of [404, 413, 500, 502, 503, 504]) {
        const p = await page(`/status/${status}`, host);
        expect(p.status).toBe(status);
        expect(p.type).toBe("text/plain");
        expect(p.body).toBe(`app says ${status}`);
      }
    }
  });

  test("a missing or unusable DIR fails the deploy (exit 1) and changes nothing", async () => {
    const before = await stateOf();
    const missing = path.join(pagesDir, "does-not-exist");
    const other = startStreamBackend();
    try {
      // Redeploying an existing service with new options and a new target.
      const redeploy = await proxy.cli(["deploy", "custom", "--target", other.address, "--host", "custom.test", "--target-timeout", "10s", "--error-pages", missing]);
      expect(redeploy.code).toBe(1);
      expect(redeploy.stderr).toMatch(/^Error: .*does-not-exist/m);

      // A brand-new service, with a missing directory and with a plain file.
      const fresh = await proxy.cli(["deploy", "brand-new", "--target", app.address, "--host", "brand-new.test", "--error-pages", missing]);
      expect(fresh.code).toBe(1);
      expect(fresh.stderr).toMatch(/^Error: /m);
      const notADir = path.join(pagesDir, "502.html");
      const fileInstead = await proxy.cli(["deploy", "brand-new", "--target", app.address, "--host", "brand-new.test", "--error-pages", notADir]);
      expect(fileInstead.code).toBe(1);
      expect(fileInstead.stderr).toMatch(/^Error: /m);

      expect(await stateOf()).toEqual(before);
      expect(other.requests).toBe(0);
      // The old service behaves as before: old target, old timeout, old pages.
      const p = await page("/slow?ms=3000", "custom.test");
      expect(p.status).toBe(504);
      expect(p.body).toBe(CUSTOM[504]!);
      expect((await page("/status/200", "custom.test")).body).toBe("app says 200");
      expect(other.requests).toBe(0);
      expectBuiltin(await page("/", "brand-new.test"), 404);
    } finally {
      await other.stop();
    }
  }, 20_000);
});

describe("request log header fields", () => {
  test("--log-request-header / --log-response-header add req_<name> / resp_<name> fields (lower case, dashes to underscores)", async () => {
    const id = crypto.randomUUID();
    const res = await proxy.fetch("/status/200", {
      host: "logged.test",
      headers: { "X-Trace-Id": "trace-abc", "User-Agent": "parachute-test/1.0", "X-Request-ID": id },
    });
    expect(await res.text()).toBe("app says 200");
    const line = await proxy.waitForLog((l) => l.msg === "Request" && l.request_id === id);
    expect(line.service).toBe("logged");
    expect(line.req_x_trace_id).toBe("trace-abc");
    expect(line.req_user_agent).toBe("parachute-test/1.0");
    expect(line.resp_content_type).toBe("text/plain");
    // A configured header the response lacks does not invent a value.
    expect(["", undefined]).toContain(line.resp_x_not_sent as string | undefined);
    expect(Object.keys(line).filter((k) => /[A-Z-]/.test(k))).toEqual([]);
  });

  test("services without the flags log no extra header fields", async () => {
    const id = crypto.randomUUID();
    const res = await proxy.fetch("/status/200", { host: "plain.test", headers: { "X-Trace-Id": "t", "X-Request-ID": id } });
    await res.text();
    const line = await proxy.waitForLog((l) => l.msg === "Request" && l.request_id === id);
    expect(line.req_x_trace_id).toBeUndefined();
    expect(Object.keys(line).filter((k) => k.startsWith("resp_") && k !== "resp_content_length")).toEqual([]);
  });
});
