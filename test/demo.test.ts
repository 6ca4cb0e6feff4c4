// The sample app (sample/app.ts) and `make demo` (scripts/demo.ts), run for
// real: the demo starts the proxy (the source, or PARACHUTE_BIN) and four
// sample instances, redeploys under load and must report no failures.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";

const ROOT = path.resolve(import.meta.dir, "..");

/** Reads `stream` line by line until `match` accepts one; returns it. */
async function firstLine(stream: ReadableStream<Uint8Array>, match: (line: string) => boolean): Promise<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    for (const line of buffered.split("\n").slice(0, -1)) if (match(line)) return line;
    buffered = buffered.slice(buffered.lastIndexOf("\n") + 1);
  }
  throw new Error(`stream ended before a matching line (rest: ${buffered})`);
}

test("the sample app answers /up and shows which instance served the request", async () => {
  const app = Bun.spawn([process.execPath, path.join(ROOT, "sample/app.ts")], {
    env: { ...process.env, PORT: "0", BIND: "127.0.0.1", INSTANCE: "sample-<test>" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  try {
    const listening = JSON.parse(await firstLine(app.stdout, (l) => l.includes('"listening"'))) as { port: number; instance: string };
    expect(listening.instance).toBe("sample-<test>");
    const base = `http://127.0.0.1:${listening.port}`;

    const up = await fetch(`${base}/up`);
    expect(up.status).toBe(200);
    expect(await up.text()).toBe("OK");

    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const html = await page.text();
    expect(html).toContain("Served by sample-&lt;test&gt;"); // escaped
    expect(html).toContain(String(listening.port));

    const who = await fetch(`${base}/whoami`, { headers: { "x-request-id": "abc" } });
    expect(who.status).toBe(200);
    expect(await who.json()).toMatchObject({ instance: "sample-<test>", port: listening.port, path: "/whoami", request_id: "abc" });

    expect((await fetch(`${base}/nope`)).status).toBe(404);
  } finally {
    app.kill("SIGTERM");
  }
  // Graceful stop on SIGTERM: exit 0, not killed by the signal.
  expect(await app.exited).toBe(0);
});

test("make demo (DEMO_EXIT=1) redeploys under load with no failures and cleans up", async () => {
  const demo = Bun.spawn([process.execPath, path.join(ROOT, "scripts/demo.ts")], {
    cwd: ROOT,
    env: { ...process.env, DEMO_EXIT: "1", NO_COLOR: "1" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => demo.kill("SIGKILL"), 50_000);
  const [stdout, stderr, code] = await Promise.all([new Response(demo.stdout).text(), new Response(demo.stderr).text(), demo.exited]);
  clearTimeout(timer);
  const output = `${stdout}\n${stderr}`;

  if (code !== 0) console.error(output);
  expect(code).toBe(0);
  expect(stdout).toMatch(/requests served: [1-9]\d*/);
  expect(stdout).toContain("failures: 0");
  expect(stdout).toContain("old instance after its deploy returned: 0");
  // Every instance served: web-1 first, then web-2 and web-3 together, then web-4.
  const servedBy = stdout.match(/served by: (.*)/)?.[1] ?? "";
  for (const name of ["web-1", "web-2", "web-3", "web-4"]) expect(servedBy).toMatch(new RegExp(`${name} [1-9]`));
  expect(stdout).toMatch(/web-2 \+ web-3 serving\s+web-2 [1-9]\d*, web-3 [1-9]\d*$/m);
  expect(stdout).toMatch(/web-4 serving\s+web-4 [1-9]\d*$/m);
  // The URLs to try are printed.
  expect(stdout).toMatch(/http:\/\/127\.0\.0\.1:\d+\/whoami/);

  // The temporary state directory (and the socket in it) is gone: children were stopped first.
  const dir = stdout.match(/state and socket in (\S+?)\)/)?.[1];
  expect(dir).toBeDefined();
  expect(fs.existsSync(dir!)).toBe(false);
}, 60_000);
