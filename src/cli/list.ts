import type { ServiceView } from "../service/view.ts";
import { parachuteCommand, socketFlag } from "./command.ts";

/** Renders `list` as an aligned table, one row per service and target (README "Traffic control"). */
export function renderTable(services: ServiceView[]): string {
  const header = ["SERVICE", "HOST", "PATH", "TARGET", "STATE", "TLS"];
  const rows = services.flatMap((s) =>
    s.targets.map((t) => [
      s.name,
      s.hosts.length ? s.hosts.join(",") : "*",
      s.pathPrefixes.join(","),
      t.address,
      t.state + (t.role === "reader" || t.role === "rollout" ? ` [${t.role}]` : "") + (s.state === "running" ? "" : ` (${s.state})`),
      s.tls ? "yes" : "no",
    ]),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const table = [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n");
  const splits = services
    .filter((s) => s.rollout)
    .map((s) => `rollout ${s.name}: ${s.rollout!.percent}% of clients${s.rollout!.list.length ? ` + ${s.rollout!.list.join(", ")}` : ""}`);
  return [table, ...splits].join("\n");
}

export const listCommand = parachuteCommand({
  name: "list",
  description: "List services and their targets",
  shape: {
    positionals: [],
    flags: { json: { type: "boolean", local: true, description: "print JSON for scripts", default: "false" }, ...socketFlag },
  },
  async run(ctx) {
    const { services } = await ctx.client().get<{ services: ServiceView[] }>("/services");
    if (ctx.flags.json) console.log(JSON.stringify({ services }, null, 2));
    else if (services.length === 0) console.log("No services deployed.");
    else console.log(renderTable(services));
  },
});
