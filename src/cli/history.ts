// `history`: what the commands did to a service, oldest first, newest last
// (README "History and rollback").
import * as v from "valibot";
import { DEPLOY_PARAMETERS, serviceNameSchema } from "../admin/requests.ts";
import type { HistoryRecord, TargetSets } from "../service/history.ts";
import { SERVICE_OPTIONS } from "../service/options.ts";
import { parachuteCommand, socketFlag } from "./command.ts";

const FLAGS: Record<string, string> = Object.fromEntries(
  Object.entries({ ...DEPLOY_PARAMETERS, ...SERVICE_OPTIONS }).map(([key, f]) => [key, f.flag]),
);
/** Shown in the targets column instead. */
const TARGET_FIELDS = new Set(["targets", "readTargets"]);

const kebab = (field: string) => field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** A record's command as a command line, without the service and the targets (`deploy --host a.test --deploy-timeout 5s`). */
export function commandLine(record: HistoryRecord): string {
  const words: string[] = [record.command];
  for (const [field, value] of Object.entries(record.options)) {
    if (TARGET_FIELDS.has(field)) continue;
    const flag = `--${FLAGS[field] ?? kebab(field)}`;
    if (value === true) words.push(flag);
    else if (value === false) words.push(`--no-${flag.slice(2)}`);
    else words.push(flag, shellWord(Array.isArray(value) ? value.join(",") : String(value)));
  }
  return words.join(" ");
}

/** A value as it would be typed: quoted only when it needs to be. */
const shellWord = (value: string) => (/^[\w@%+=:,./-]+$/.test(value) ? value : JSON.stringify(value));

function targets(sets: TargetSets): string {
  const parts = [sets.targets.join(",")];
  if (sets.readTargets.length) parts.push(`read:${sets.readTargets.join(",")}`);
  if (sets.rolloutTargets.length) parts.push(`rollout:${sets.rolloutTargets.join(",")}`);
  return parts.filter(Boolean).join(" ") || "-";
}

function duration(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`;
}

/** The history as an aligned table, one row per record; the outcome (with its reason) last, as it may be long. */
export function renderHistory(records: readonly HistoryRecord[]): string {
  const header = ["TIME", "COMMAND", "DURATION", "TARGETS (BEFORE → AFTER)", "OUTCOME"];
  const rows = records.map((r) => [
    r.time.replace(/\.\d+Z$/, "Z"),
    commandLine(r),
    duration(r.durationMs),
    `${targets(r.before)} → ${targets(r.after)}`,
    r.outcome === "ok" ? "ok" : `failed: ${(r.error ?? "").replace(/\n(Error: )?/g, "; ")}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows].map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n");
}

export const historyCommand = parachuteCommand({
  name: "history",
  description: "Show what deploys and other commands did to a service (newest last)",
  shape: {
    positionals: [{ name: "SERVICE", description: "service name (a removed service's history is kept)" }],
    flags: { json: { type: "boolean", local: true, description: "print JSON for scripts", default: "false" }, ...socketFlag },
  },
  async run(ctx) {
    // Checked as every command checks its service name (an empty one would ask for no service at all).
    const { service } = ctx.request(v.object({ service: serviceNameSchema }), { service: ctx.positionals[0] });
    const { records } = await ctx.client().get<{ service: string; records: HistoryRecord[] }>(`/history/${encodeURIComponent(service)}`);
    if (ctx.flags.json) console.log(JSON.stringify({ service, records }, null, 2));
    else if (records.length === 0) console.log(`No commands recorded for ${service} yet.`);
    else console.log(renderHistory(records));
  },
});
