// Resident memory of a server process and everything it forked, from
// /proc/PID/status (Linux). A parachute that forks workers is covered by
// summing the whole process tree.
import * as fs from "node:fs";
import { processTree } from "./procs.ts";

export interface Memory {
  /** VmRSS summed over the tree (shared pages count once per process). */
  rss_kb: number;
  /** VmHWM summed over the tree: each process's peak RSS so far. */
  peak_kb: number;
  processes: number;
}

function statusField(status: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return m ? Number(m[1]) : 0;
}

/** undefined when /proc is unreadable (not Linux) or the process is gone. */
export function memoryOf(pid: number): Memory | undefined {
  try {
    const pids = processTree(pid);
    let rss = 0;
    let peak = 0;
    for (const p of pids) {
      const status = fs.readFileSync(`/proc/${p}/status`, "utf8");
      rss += statusField(status, "VmRSS");
      peak += statusField(status, "VmHWM");
    }
    return { rss_kb: rss, peak_kb: peak, processes: pids.length };
  } catch {
    return undefined;
  }
}
