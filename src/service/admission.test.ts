import { afterAll, expect, test } from "bun:test";
import { admit, type Admission } from "./admission.ts";
import { CommandError } from "./command-error.ts";
import { defaultOptions } from "./options.ts";
import { Service } from "./service.ts";
import { Target, type TargetHealth } from "./target.ts";

let checks = 0;
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    checks++;
    return new Response("", { status: new URL(req.url).pathname === "/up" ? 200 : 500 });
  },
});
afterAll(() => server.stop(true));
const address = `127.0.0.1:${server.port}`;

function target(health: TargetHealth = "adding", at = address): Target {
  const t = new Target(at);
  t.health = health;
  return t;
}

function admission(path: string, more: Partial<Admission> = {}): Admission & { lines: string[] } {
  const lines: string[] = [];
  return { name: "web", service: undefined, config: { path, intervalMs: 10, timeoutMs: 1000 }, timeoutMs: 2000, force: false, progress: (l) => lines.push(l), lines, ...more };
}

async function refusal(promise: Promise<unknown>): Promise<CommandError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CommandError);
  return error as CommandError;
}

test("targets that pass a check are admitted, unchanged, with progress lines", async () => {
  const [a, b] = [target(), target()];
  const gate = admission("/up");
  expect(await admit([a, b], gate)).toEqual([a, b]);
  expect(a.health).toBe("adding"); // the caller marks them healthy as it switches
  expect(b.health).toBe("adding");
  expect(gate.lines).toEqual([
    `Target ${address}: adding, checking GET /up every 10ms`,
    `Target ${address}: adding, checking GET /up every 10ms`,
    `Target ${address}: healthy (GET /up returned 200)`,
    `Target ${address}: healthy (GET /up returned 200)`,
  ]);
});

test("with --force nothing is checked", async () => {
  const before = checks;
  const t = target();
  const gate = admission("/broken", { force: true });
  expect(await admit([t], gate)).toEqual([t]);
  expect(gate.lines).toEqual([]);
  expect(checks).toBe(before);
});

test("a target still failing at the deploy timeout fails the command with 422, naming it and its last check", async () => {
  const gate = admission("/broken", { timeoutMs: 100 });
  const error = await refusal(admit([target()], gate));
  expect(error.status).toBe(422);
  expect(error.message).toBe(`target ${address} failed to become healthy within 100ms (last check: GET /broken returned 500)`);
  // The same failure is reported once, however often it repeats.
  expect(gate.lines).toEqual([`Target ${address}: adding, checking GET /broken every 10ms`, `Target ${address}: not healthy yet (GET /broken returned 500)`]);
  expect(checks).toBeGreaterThan(2);
});

test("several failing targets: one line each", async () => {
  const dead = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const deadPort = dead.port;
  await dead.stop(true);
  const error = await refusal(admit([target(), target("adding", `127.0.0.1:${deadPort}`)], admission("/broken", { timeoutMs: 100 })));
  expect(error.message).toBe(
    `target ${address} failed to become healthy within 100ms (last check: GET /broken returned 500)` +
      `\nError: target 127.0.0.1:${deadPort} failed to become healthy within 100ms (last check: GET /broken failed: connection refused)`,
  );
});

test("live targets already healthy are not checked again; new ones are shown as adding while checked", async () => {
  const live = target("healthy");
  const failing = target("unhealthy");
  const service = new Service("web", defaultOptions(), [live, failing]);
  const fresh = target();
  let addingDuring: Target[] = [];
  const gate = admission("/up", { service, progress: () => (addingDuring = [...service.adding.keys()]) });
  expect(await admit([live, failing, fresh], gate)).toEqual([failing, fresh]);
  expect(addingDuring).toEqual([fresh]); // the failing live target keeps its place, not shown as adding
  expect(service.adding.size).toBe(0);
  expect(failing.health).toBe("unhealthy"); // re-checked on a record of its own
});

test("the adding set is emptied when the check fails too", async () => {
  const service = new Service("web", defaultOptions(), [target("healthy")]);
  const fresh = target();
  await refusal(admit([fresh], admission("/broken", { service, timeoutMs: 50 })));
  expect(service.adding.size).toBe(0);
});

test("nothing to check: admitted at once", async () => {
  const live = target("healthy");
  const service = new Service("web", defaultOptions(), [live]);
  const gate = admission("/broken", { service, timeoutMs: 10_000 });
  expect(await admit([live], gate)).toEqual([]);
  expect(gate.lines).toEqual([]);
});
