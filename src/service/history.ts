// The deploy history (README "History and rollback"): what each command did
// to a service, when, with which options, from which targets to which, how
// long it took and how it ended. The last HISTORY_LIMIT records per service
// are kept; a removed service keeps its history. `rollback` reads its
// destination here (rollbackPoint).
import * as v from "valibot";
import { targetSchema } from "../values.ts";

/** Records kept per service: the oldest goes when a new one comes. */
export const HISTORY_LIMIT = 50;

/** The commands that are recorded, as the CLI names them. */
export const RECORDED_COMMANDS = ["deploy", "rollback", "add", "rm", "remove", "pause", "stop", "resume", "rollout deploy", "rollout set", "rollout stop"] as const;
export type RecordedCommand = (typeof RECORDED_COMMANDS)[number];

const addresses = v.array(targetSchema);

/** A service's target sets at one moment; all empty when the service does not exist. */
const TargetSetsSchema = v.object({
  targets: addresses,
  readTargets: v.optional(addresses, []),
  rolloutTargets: v.optional(addresses, []),
});
export type TargetSets = v.InferOutput<typeof TargetSetsSchema>;

export const NO_TARGETS: TargetSets = { targets: [], readTargets: [], rolloutTargets: [] };

export const HistoryRecordSchema = v.object({
  /** When the command started (ISO 8601, UTC). */
  time: v.string(),
  command: v.picklist(RECORDED_COMMANDS),
  /**
   * The request fields as the client gave them (flags by field name, values
   * as typed: "30s", not 30000); defaults the client left out are not here.
   */
  options: v.record(v.string(), v.unknown()),
  before: TargetSetsSchema,
  after: TargetSetsSchema,
  durationMs: v.number(),
  /**
   * "ok", or "failed" with the reason in `error`, which is what the client
   * was told. (An automatic rollback after a verify window is a failed
   * deploy whose error says so, and whose `after` is the targets it went
   * back to.)
   */
  outcome: v.picklist(["ok", "failed"]),
  error: v.optional(v.string()),
});
export type HistoryRecord = v.InferOutput<typeof HistoryRecordSchema>;

/** The history file's form: records by service name, oldest first. */
export const SavedHistorySchema = v.object({
  version: v.literal(1),
  services: v.record(v.string(), v.array(HistoryRecordSchema)),
});
export type SavedHistory = v.InferOutput<typeof SavedHistorySchema>;

/**
 * Request fields never kept in a record, whatever a client sends: the
 * service is the record's key, and credentials have no place in a log.
 * (Requests name files, such as --basic-auth-file, never their contents.)
 */
const NOT_RECORDED = new Set(["service", "basicAuth", "password", "secret"]);

/** The options of a record from the request fields a client gave. */
export function recordedOptions(given: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(given).filter(([key, value]) => value !== undefined && !NOT_RECORDED.has(key)));
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();

/** Do two records leave the service on the same writers and readers? */
function sameTargets(a: TargetSets, b: TargetSets): boolean {
  return sameSet(a.targets, b.targets) && sameSet(a.readTargets, b.readTargets);
}

/** A successful command that put a whole new set of targets in place. */
const isSwitch = (r: HistoryRecord) => r.outcome === "ok" && (r.command === "deploy" || r.command === "rollback");

export class History {
  private readonly byService = new Map<string, HistoryRecord[]>();

  constructor(saved?: SavedHistory) {
    for (const [service, records] of Object.entries(saved?.services ?? {})) this.byService.set(service, records.slice(-HISTORY_LIMIT));
  }

  record(service: string, record: HistoryRecord): void {
    const records = this.byService.get(service) ?? [];
    records.push(record);
    if (records.length > HISTORY_LIMIT) records.splice(0, records.length - HISTORY_LIMIT);
    this.byService.set(service, records);
  }

  /** The records of a service, oldest first; undefined when it has none. */
  of(service: string): readonly HistoryRecord[] | undefined {
    return this.byService.get(service);
  }

  /** Every service with a history, removed ones included, by name. */
  services(): string[] {
    return [...this.byService.keys()].sort();
  }

  toJSON(): SavedHistory {
    return { version: 1, services: Object.fromEntries(this.byService) };
  }

  /**
   * The deploy a rollback returns to: the latest successful deploy (or
   * rollback) before the current one that left other targets in place. The
   * current one is the latest; a rollback counts as one, so a second
   * rollback returns to where the first came from (a toggle). A removal ends
   * a service's past: nothing before it is a rollback point.
   */
  rollbackPoint(service: string): HistoryRecord | undefined {
    let current: HistoryRecord | undefined;
    for (const record of [...(this.byService.get(service) ?? [])].reverse()) {
      if (record.command === "remove" && record.outcome === "ok") return undefined;
      if (!isSwitch(record)) continue;
      if (!current) current = record;
      else if (!sameTargets(record.after, current.after)) return record;
    }
    return undefined;
  }
}
