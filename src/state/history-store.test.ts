import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { History, NO_TARGETS } from "../service/history.ts";
import { HistoryStore } from "./history-store.ts";

const dirs: string[] = [];
function store(): HistoryStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-history-"));
  dirs.push(dir);
  return new HistoryStore(dir);
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function sample(): History {
  const history = new History();
  history.record("web", { time: "2026-01-01T00:00:00.000Z", command: "deploy", options: { targets: ["a:1"] }, before: NO_TARGETS, after: { targets: ["a:1"], readTargets: [], rolloutTargets: [] }, durationMs: 40, outcome: "ok" });
  return history;
}

test("a saved history loads back the same, from a private file with no temporaries left", () => {
  const s = store();
  s.save(sample());
  const { history, problem } = s.load();
  expect(problem).toBeUndefined();
  expect(history.toJSON()).toEqual(sample().toJSON());
  expect(fs.statSync(s.file).mode & 0o777).toBe(0o600);
  expect(fs.readdirSync(path.dirname(s.file))).toEqual(["history.json"]);
});

test("a save that fails throws and leaves no temporary behind", () => {
  const s = store();
  fs.mkdirSync(s.file); // its place taken by a directory: the rename fails
  expect(() => s.save(sample())).toThrow();
  expect(fs.readdirSync(path.dirname(s.file))).toEqual(["history.json"]);
});

test("no history file is an empty history, not a problem", () => {
  const { history, problem, setAside } = store().load();
  expect(problem).toBeUndefined();
  expect(setAside).toBeUndefined();
  expect(history.services()).toEqual([]);
});

for (const [kind, text, expected] of [
  ["not JSON", "{ nope", "not valid JSON"],
  ["wrong shape", JSON.stringify({ version: 1, services: { web: [{ time: 1 }] } }), "does not match the schema at services.web.0"],
  ["other version", JSON.stringify({ version: 9, services: {} }), "does not match the schema at version"],
] as const) {
  test(`a corrupt history file (${kind}) is set aside with its content and the history starts empty`, () => {
    const s = store();
    fs.writeFileSync(s.file, text);
    const { history, problem, setAside } = s.load();
    expect(problem).toContain(expected);
    expect(setAside).toStartWith(`${s.file}.corrupt-`);
    expect(fs.readFileSync(setAside!, "utf8")).toBe(text);
    expect(fs.existsSync(s.file)).toBe(false);
    expect(history.services()).toEqual([]);
    // And saving works from there.
    s.save(sample());
    expect(s.load().history.of("web")!.length).toBe(1);
  });
}

test("a temporary left by a dead process is removed at load", () => {
  const s = store();
  const stale = `${s.file}.tmp-999999999`;
  fs.writeFileSync(stale, "half");
  s.load();
  expect(fs.existsSync(stale)).toBe(false);
});
