// The persisted routing state (README "State"): one JSON file, written
// atomically (atomic-file.ts) after every change, read back and validated
// with a schema at start.
import * as fs from "node:fs";
import * as path from "node:path";
import * as v from "valibot";
import { ServiceOptionsSchema } from "../service/options.ts";
import { removeStaleTemporaries, setAside, writeAtomically } from "./atomic-file.ts";
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
    removeStaleTemporaries(this.file);
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

  private setAside(problem: string): { problem: string; setAside?: string } {
    const aside = setAside(this.file);
    return aside ? { problem, setAside: aside } : { problem };
  }

  /** Fails (with the system's reason) unless a state file can be written here: checked at start, not at the first deploy. */
  checkWritable(): void {
    const probe = path.join(this.dir, `.write-check-${process.pid}`);
    fs.writeFileSync(probe, "", { mode: 0o600 });
    fs.rmSync(probe, { force: true });
  }

  save(state: SavedState): void {
    writeAtomically(this.file, JSON.stringify(state, null, 2) + "\n");
  }
}
