import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Registry } from "../service/registry.ts";
import { StateStore } from "../state/store.ts";
import { createAdminApp } from "./app.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-admin-"));
const registry = new Registry(new StateStore(dir));
const app = createAdminApp(registry, { upgrade: async () => {} });

/** A target whose health check answers 200 once `ready()` is called. */
let healthy = false;
const backend = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: () => new Response(healthy ? "ok" : "not yet", { status: healthy ? 200 : 503 }),
});
const target = `127.0.0.1:${backend.port}`;

afterAll(async () => {
  registry.dispose();
  await backend.stop(true);
  fs.rmSync(dir, { recursive: true, force: true });
});

const post = (route: string, body: string, contentType: string | undefined = "application/json") =>
  app.request(route, { method: "POST", body, headers: contentType ? { "content-type": contentType } : {} });

async function errorOf(res: Response): Promise<[number, string]> {
  expect(res.headers.get("content-type")).toContain("application/json");
  return [res.status, ((await res.json()) as { error: string }).error];
}

test("bad bodies get a status and a JSON error naming what is wrong", async () => {
  expect(await errorOf(await post("/deploy", "{not json"))).toEqual([400, "request body is not valid JSON"]);
  expect(await errorOf(await post("/deploy", "null"))).toEqual([400, "expected a JSON object"]);
  expect(await errorOf(await post("/deploy", JSON.stringify({ service: "web", targets: [target], bufferMemory: "lots" })))).toEqual([
    400,
    'bufferMemory: invalid size "lots" (use bytes or a k/m/g suffix, e.g. 10m)',
  ]);
  expect(await errorOf(await post("/rm", JSON.stringify({ service: "web" })))).toEqual([400, "targets is required"]);
  expect(await errorOf(await post("/deploy", JSON.stringify({ service: "web", targets: [target] }), "text/plain"))).toEqual([
    415,
    "expected a JSON body (Content-Type: application/json)",
  ]);
  expect(await errorOf(await post("/pause", JSON.stringify({ service: "nosuch" })))).toEqual([404, "service not found"]);
  expect(await errorOf(await app.request("/nowhere"))).toEqual([404, "unknown admin endpoint GET /nowhere"]);
  expect(registry.list()).toEqual([]);
});

test("a command streams its progress as NDJSON and ends with its result; a client that leaves does not stop it", async () => {
  healthy = false;
  const res = await post("/deploy", JSON.stringify({ service: "web", targets: [target], healthCheckInterval: "20ms", deployTimeout: "10s" }));
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/x-ndjson");
  const reader = res.body!.getReader();
  const first = JSON.parse(new TextDecoder().decode((await reader.read()).value!).split("\n")[0]!);
  expect(first).toEqual({ progress: `Target ${target}: adding, checking GET /up every 20ms` });
  await reader.cancel();
  // The deploy goes on without its client and completes once the target is healthy.
  healthy = true;
  for (let i = 0; i < 500 && registry.list().length === 0; i++) await Bun.sleep(10);
  expect(registry.list().map((s) => s.name)).toEqual(["web"]);

  const again = await post("/deploy", JSON.stringify({ service: "web", targets: [target], healthCheckInterval: "20ms" }));
  const lines = (await again.text()).trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.at(-1)).toEqual({ ok: true });
  expect(lines.slice(0, -1).every((l) => typeof l.progress === "string")).toBe(true);
});

test("GET /history/SERVICE: the records, with the fields the client gave as it gave them; 404 for a name never seen", async () => {
  healthy = true;
  const body = { service: "hist", targets: [target], hosts: ["hist.test"], drainTimeout: "2s", healthCheckInterval: "20ms" };
  const res = await post("/deploy", JSON.stringify(body));
  expect((await res.text()).trim().split("\n").at(-1)).toBe('{"ok":true}');
  const history = (await (await app.request("/history/hist")).json()) as { service: string; records: { command: string; options: unknown; outcome: string }[] };
  expect(history.service).toBe("hist");
  expect(history.records.map((r) => [r.command, r.outcome, r.options])).toEqual([["deploy", "ok", { targets: [target], hosts: ["hist.test"], drainTimeout: "2s", healthCheckInterval: "20ms" }]]);
  // Refused before it ran (a bad value, a field no command has): not recorded.
  expect((await post("/pause", JSON.stringify({ service: "hist", maxPause: "forever" }))).status).toBe(400);
  expect(await errorOf(await post("/deploy", JSON.stringify({ ...body, basicAuth: "alice:secret" })))).toEqual([400, "basicAuth: unknown field"]);
  expect(((await (await app.request("/history/hist")).json()) as { records: unknown[] }).records).toHaveLength(1);
  expect(await errorOf(await app.request("/history/nosuch"))).toEqual([404, "no service nosuch and no history of one"]);
});
