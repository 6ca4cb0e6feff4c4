import { expect, test } from "bun:test";
import * as v from "valibot";
import { History, HISTORY_LIMIT, NO_TARGETS, recordedOptions, SavedHistorySchema, type HistoryRecord, type RecordedCommand } from "./history.ts";

let clock = 0;
function record(command: RecordedCommand, after: string[], overrides: Partial<HistoryRecord> = {}): HistoryRecord {
  return {
    time: new Date(Date.UTC(2026, 0, 1) + clock++ * 1000).toISOString(),
    command,
    options: {},
    before: NO_TARGETS,
    after: { targets: after, readTargets: [], rolloutTargets: [] },
    durationMs: 12,
    outcome: "ok",
    ...overrides,
  };
}

test("a service keeps its last 50 records, oldest first; other services keep theirs", () => {
  const history = new History();
  for (let i = 0; i < HISTORY_LIMIT + 7; i++) history.record("web", record("deploy", [`web-${i}:80`]));
  history.record("api", record("pause", ["api:80"]));
  const web = history.of("web")!;
  expect(web.length).toBe(HISTORY_LIMIT);
  expect(web[0]!.after.targets).toEqual(["web-7:80"]);
  expect(web.at(-1)!.after.targets).toEqual([`web-${HISTORY_LIMIT + 6}:80`]);
  expect(history.of("api")!.map((r) => r.command)).toEqual(["pause"]);
  expect(history.of("nope")).toBeUndefined();
  expect(history.services()).toEqual(["api", "web"]);
});

test("the history serializes to the file's schema and reads back the same", () => {
  const history = new History();
  history.record("web", record("deploy", ["a:1"], { options: { hosts: ["a.test"], deployTimeout: "5s" } }));
  history.record("web", record("deploy", ["b:1"], { outcome: "failed", error: "target b:1 failed to become healthy within 5s", after: { targets: ["a:1"], readTargets: [], rolloutTargets: [] } }));
  const json = JSON.parse(JSON.stringify(history));
  const parsed = v.parse(SavedHistorySchema, json);
  expect(new History(parsed).toJSON()).toEqual(history.toJSON());
  expect(parsed.services.web![1]!.error).toContain("failed to become healthy");
});

test("a saved history longer than the cap (an edited file) is cut to the newest 50", () => {
  const records = Array.from({ length: HISTORY_LIMIT + 3 }, (_, i) => record("resume", [`t:${i + 1}`]));
  const history = new History({ version: 1, services: { web: records } });
  expect(history.of("web")!.length).toBe(HISTORY_LIMIT);
  expect(history.of("web")![0]!.after.targets).toEqual(["t:4"]);
});

test("the schema refuses a record without its fields or with an unknown command", () => {
  expect(v.safeParse(SavedHistorySchema, { version: 1, services: { web: [{ time: "x" }] } }).success).toBe(false);
  expect(v.safeParse(SavedHistorySchema, { version: 1, services: { web: [record("deploy", ["a:1"], { command: "explode" as RecordedCommand })] } }).success).toBe(false);
});

test("recorded options leave out the service and anything that looks like credentials", () => {
  expect(recordedOptions({ service: "web", targets: ["a:1"], basicAuthFile: "/etc/htpasswd", basicAuth: [["u", "hash"]], password: "x", skipped: undefined })).toEqual({
    targets: ["a:1"],
    basicAuthFile: "/etc/htpasswd",
  });
});

test("the rollback point is the successful deploy before the current one", () => {
  const history = new History();
  expect(history.rollbackPoint("web")).toBeUndefined();
  history.record("web", record("deploy", ["a:1"]));
  // Only one deploy: nothing to go back to.
  expect(history.rollbackPoint("web")).toBeUndefined();
  history.record("web", record("add", ["a:1", "c:1"]));
  history.record("web", record("deploy", ["b:1"]));
  history.record("web", record("deploy", ["x:1"], { outcome: "failed", error: "unhealthy", after: { targets: ["b:1"], readTargets: [], rolloutTargets: [] } }));
  history.record("web", record("pause", ["b:1"]));
  // The deploy's own targets, not what add made of them; the failed deploy does not count.
  expect(history.rollbackPoint("web")!.after.targets).toEqual(["a:1"]);
});

test("a redeploy of the same targets is skipped: the rollback point is the last deploy of other targets", () => {
  const history = new History();
  history.record("web", record("deploy", ["a:1"]));
  history.record("web", record("deploy", ["b:1", "b:2"]));
  history.record("web", record("deploy", ["b:2", "b:1"], { options: { hosts: ["new.test"] } }));
  expect(history.rollbackPoint("web")!.after.targets).toEqual(["a:1"]);
});

test("a rollback is a deploy too: a second rollback toggles back", () => {
  const history = new History();
  history.record("web", record("deploy", ["a:1"]));
  history.record("web", record("deploy", ["b:1"]));
  history.record("web", record("rollback", ["a:1"]));
  expect(history.rollbackPoint("web")!.after.targets).toEqual(["b:1"]);
  history.record("web", record("rollback", ["b:1"]));
  expect(history.rollbackPoint("web")!.after.targets).toEqual(["a:1"]);
});

test("read targets count: a deploy that only changed them is a rollback point", () => {
  const history = new History();
  history.record("web", record("deploy", ["a:1"], { after: { targets: ["a:1"], readTargets: ["r:1"], rolloutTargets: [] } }));
  history.record("web", record("deploy", ["a:1"]));
  expect(history.rollbackPoint("web")!.after.readTargets).toEqual(["r:1"]);
});

test("nothing before a removal is a rollback point", () => {
  const history = new History();
  history.record("web", record("deploy", ["a:1"]));
  history.record("web", record("remove", []));
  history.record("web", record("deploy", ["b:1"]));
  expect(history.rollbackPoint("web")).toBeUndefined();
  history.record("web", record("deploy", ["c:1"]));
  expect(history.rollbackPoint("web")!.after.targets).toEqual(["b:1"]);
});
