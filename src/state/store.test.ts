import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultOptions } from "../service/options.ts";
import { StateStore, type SavedState } from "./store.ts";

const dirs: string[] = [];
function store(): StateStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-store-"));
  dirs.push(dir);
  return new StateStore(dir);
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const state = (overrides: Partial<SavedState["services"][number]> = {}): SavedState => ({
  version: 1,
  services: [{ name: "web", options: defaultOptions({ hosts: ["a.test"], healthCheckInterval: 200 }), targets: ["web-1:3000"], readTargets: [], mode: "running", stopMessage: "", maxPauseMs: 30_000, ...overrides }],
});

test("a state this version saved loads back unchanged", () => {
  const s = store();
  const saved = state({ mode: "stopped", stopMessage: "back soon", rollout: { targets: ["web-2:3000"], percent: 10, list: ["beta"] } });
  s.save(saved);
  const loaded = s.load();
  expect(loaded.problem).toBeUndefined();
  expect(loaded.state).toEqual(JSON.parse(JSON.stringify(saved)));
  expect(fs.statSync(s.file).mode & 0o777).toBe(0o600);
});

test("a state file of the first layout (health check as one object, durations as …Ms) still loads", () => {
  const s = store();
  fs.copyFileSync(path.join(import.meta.dir, "fixtures", "first-layout.state"), s.file);
  const { state: loaded, problem } = s.load();
  expect(problem).toBeUndefined();
  const service = loaded.services[0]!;
  expect(service.mode).toBe("stopped");
  expect(service.stopMessage).toBe("back soon");
  expect(service.options).toEqual(
    defaultOptions({ hosts: ["a.test"], healthCheckInterval: 200, bufferMemory: 2 * 1024 * 1024, logRequestHeaders: ["x-id"] }),
  );
});

test("an option missing from a saved service gets its default", () => {
  const s = store();
  const saved = state();
  const { writerAffinityTimeout: _, ...older } = saved.services[0]!.options;
  fs.writeFileSync(s.file, JSON.stringify({ ...saved, services: [{ ...saved.services[0], options: older }] }));
  expect(s.load().state.services[0]!.options.writerAffinityTimeout).toBe(1000);
});

test("a corrupt state file is set aside, named in the problem, and the state is empty", () => {
  const s = store();
  fs.writeFileSync(s.file, JSON.stringify({ version: 1, services: [{ name: "web", options: { ...defaultOptions(), bufferMemory: -1 }, targets: ["a:1"] }] }));
  const loaded = s.load();
  expect(loaded.state.services).toEqual([]);
  expect(loaded.problem).toContain("services.0.options.bufferMemory");
  expect(fs.existsSync(s.file)).toBe(false);
  expect(fs.readFileSync(loaded.setAside!, "utf8")).toContain("-1");
});

test("temporary files of saves cut short are removed; one of a live process is kept", () => {
  const s = store();
  const dead = Bun.spawnSync(["true"]).pid; // exited, so its pid is free (or reused by something we do not own)
  const stale = `${s.file}.tmp-${dead}`;
  const unnamed = `${s.file}.tmp-x`;
  const live = `${s.file}.tmp-${process.ppid}`;
  for (const file of [stale, unnamed, live]) fs.writeFileSync(file, "{");
  s.load();
  expect(fs.existsSync(unnamed)).toBe(false);
  expect(fs.existsSync(live)).toBe(true);
  // The dead pid is removed unless the system already gave it to another live process.
  let reused = true;
  try {
    process.kill(dead, 0);
  } catch {
    reused = false;
  }
  expect(fs.existsSync(stale)).toBe(reused);
});
