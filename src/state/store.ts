// The persisted routing state (README "State"): one JSON file, written atomically
// (temp file in the same directory, fsync, rename, fsync the directory) after
// every change, read back and validated with a schema at start.
import * as fs from "node:fs";
import * as path from "node:path";
import * as v from "valibot";
import { ServiceOptionsSchema } from "../service/options.ts";
import { targetSchema, wholeSchema as whole } from "../values.ts";

/**
 * State written before the options were declared once kept the health check
 * as one object and durations under `…Ms` names; such a file still loads.
 */
function fromFirstLayout(options: Record<string, unknown>): Record<string, unknown> {
  const { healthCheck, targetTimeoutMs, drainTimeoutMs, writerAffinityTimeoutMs, ...rest } = options;
  if (!healthCheck || typeof healthCheck !== "object") return options;
  const check = healthCheck as Record<string, unknown>;
  const renamed: Record<string, unknown> = {
    healthCheckPath: check.path,
    healthCheckInterval: check.intervalMs,
    healthCheckTimeout: check.timeoutMs,
    healthCheckPort: check.port,
    healthCheckHost: check.host,
    targetTimeout: targetTimeoutMs,
    drainTimeout: drainTimeoutMs,
    writerAffinityTimeout: writerAffinityTimeoutMs,
  };
  for (const [key, value] of Object.entries(renamed)) if (value !== undefined) rest[key] = value;
  return rest;
}

const OptionsSchema = v.pipe(v.record(v.string(), v.unknown()), v.transform(fromFirstLayout), ServiceOptionsSchema);

const ServiceSchema = v.object({
  name: v.string(),
  options: OptionsSchema,
  targets: v.pipe(v.array(targetSchema), v.minLength(1)),
  readTargets: v.optional(v.array(targetSchema), []),
  mode: v.optional(v.picklist(["running", "paused", "stopped"]), "running"),
  stopMessage: v.optional(v.string(), ""),
  maxPauseMs: v.optional(whole, 30_000),
  /** The --basic-auth-file entries as read at deploy: a restart enforces them without the file. */
  basicAuth: v.optional(v.array(v.tuple([v.string(), v.string()]))),
  rollout: v.optional(
    v.object({
      targets: v.array(targetSchema),
      percent: v.number(),
      list: v.array(v.string()),
    }),
  ),
});

export const StateSchema = v.object({
  version: v.literal(1),
  services: v.array(ServiceSchema),
});

export type SavedState = v.InferOutput<typeof StateSchema>;
export type SavedService = SavedState["services"][number];

export class StateStore {
  readonly file: string;

  constructor(readonly dir: string) {
    this.file = path.join(dir, "parachute.state");
  }

  /**
   * Reads the saved state. A missing file is an empty state; a corrupt one is
   * moved aside as parachute.state.corrupt-<time> and reported, never fatal.
   */
  load(): { state: SavedState; problem?: string; setAside?: string } {
    this.removeStaleTemporaries();
    const empty: SavedState = { version: 1, services: [] };
    let text: string;
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { state: empty };
      return { state: empty, ...this.setAside(`cannot read state file: ${(error as Error).message}`) };
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      return { state: empty, ...this.setAside(`state file is not valid JSON: ${(error as Error).message}`) };
    }
    const result = v.safeParse(StateSchema, json);
    if (!result.success) {
      const issue = result.issues[0]!;
      const where = v.getDotPath(issue) ?? "";
      return { state: empty, ...this.setAside(`state file does not match the schema${where ? ` at ${where}` : ""}: ${issue.message}`) };
    }
    return { state: result.output };
  }

  /** Reads the saved state without touching the file: undefined when it is missing or unreadable. */
  peek(): SavedState | undefined {
    try {
      const result = v.safeParse(StateSchema, JSON.parse(fs.readFileSync(this.file, "utf8")));
      return result.success ? result.output : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * A server killed while saving leaves its `parachute.state.tmp-<pid>`
   * behind; those of processes that are gone are removed. A live one belongs
   * to a server saving right now (the old one, during an upgrade).
   */
  private removeStaleTemporaries(): void {
    const prefix = `${path.basename(this.file)}.tmp-`;
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const pid = Number(name.slice(prefix.length));
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processExists(pid)) continue;
      fs.rmSync(path.join(this.dir, name), { force: true });
    }
  }

  private setAside(problem: string): { problem: string; setAside?: string } {
    const aside = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    try {
      fs.renameSync(this.file, aside);
      return { problem, setAside: aside };
    } catch {
      return { problem };
    }
  }

  /** Fails (with the system's reason) unless a state file can be written here: checked at start, not at the first deploy. */
  checkWritable(): void {
    const probe = path.join(this.dir, `.write-check-${process.pid}`);
    fs.writeFileSync(probe, "", { mode: 0o600 });
    fs.rmSync(probe, { force: true });
  }

  save(state: SavedState): void {
    const tmp = `${this.file}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, "w", 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(state, null, 2) + "\n");
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.file);
    // fsync the directory so the rename itself survives a power cut.
    const dirFd = fs.openSync(this.dir, "r");
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
