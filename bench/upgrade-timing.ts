// `bun run bench:upgrade [WORKERS]`: how long `parachute upgrade` takes, how
// long the new server takes to serve, and (with workers) how soon a killed
// worker is back. The compiled binary (make build) against bench/backend.ts,
// idle, on 127.0.0.1; 5 upgrades and 5 worker kills, then everything stops.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ROOT } from "./settings.ts";

const ROUNDS = 5;
const workers = Number(process.argv[2] ?? 2);
const bin = path.join(ROOT, "dist/parachute");
if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run make build first`);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-upgrade-timing-"));
const socket = path.join(dir, "admin.sock");
const logFile = path.join(dir, "parachute.log");

type Line = Record<string, unknown>;
const lines = (): Line[] =>
  fs
    .readFileSync(logFile, "utf8")
    .split("\n")
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Line];
      } catch {
        return [];
      }
    });

async function waitForLine(match: (l: Line) => boolean, from = 0, timeoutMs = 10_000): Promise<Line> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const line = lines().slice(from).find(match);
    if (line) return line;
    if (performance.now() > deadline) throw new Error("timed out waiting for a log line");
    await Bun.sleep(5);
  }
}

async function cli(args: string[]) {
  const proc = Bun.spawn([bin, ...args, "--socket", socket], { stdout: "pipe", stderr: "pipe" });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`parachute ${args.join(" ")} failed:\n${stderr}`);
}

const backend = Bun.spawn([process.execPath, path.join(import.meta.dir, "backend.ts")], { stdout: "pipe", stderr: "inherit" });
const backendPort = JSON.parse(new TextDecoder().decode((await backend.stdout.getReader().read()).value)).port as number;

const output = fs.openSync(logFile, "w");
const server = Bun.spawn(
  [bin, "run", "--http-port", "0", "--https-port", "0", "--bind", "127.0.0.1", "--state-dir", dir, "--socket", socket, "--workers", String(workers)],
  { stdout: output, stderr: output },
);
const serverPid = async () => Number((await waitForLine((l) => l.msg === "Server started", lines().findLastIndex((l) => l.msg === "Server started"))).pid);

try {
  await waitForLine((l) => l.msg === "Server started");
  await cli(["deploy", "bench", "--target", `127.0.0.1:${backendPort}`]);

  const upgrades: number[] = [];
  const toServing: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const mark = lines().length;
    const started = performance.now();
    await cli(["upgrade"]);
    upgrades.push(performance.now() - started);
    const upgrading = await waitForLine((l) => l.msg === "Upgrading", mark);
    const handing = await waitForLine((l) => l.msg === "Handing over", mark);
    toServing.push(Date.parse(String(handing.time)) - Date.parse(String(upgrading.time)));
  }

  const restarts: number[] = [];
  for (let i = 0; workers > 1 && i < ROUNDS; i++) {
    // A worker that lived over a second is restarted at once (a crash loop waits).
    await Bun.sleep(1_500);
    const current = new Map<unknown, number>();
    for (const l of lines()) if (l.msg === "Worker started") current.set(l.worker, Number(l.pid));
    const victim = current.get(1)!;
    const mark = lines().length;
    const killed = performance.now();
    process.kill(victim, "SIGKILL");
    await waitForLine((l) => l.msg === "Worker started" && l.worker === 1 && l.pid !== victim, mark);
    restarts.push(performance.now() - killed);
  }

  const range = (values: number[]) => (values.length ? `${Math.round(Math.min(...values))}–${Math.round(Math.max(...values))} ms` : "-");
  console.log(`workers: ${workers}`);
  console.log(`parachute upgrade, end to end: ${range(upgrades)}`);
  console.log(`from "Upgrading" to "Handing over" (the new server serving): ${range(toServing)}`);
  if (workers > 1) console.log(`kill -9 of a worker to its replacement's "Worker started": ${range(restarts)}`);
  const pid = await serverPid();
  process.kill(pid, "SIGTERM");
  while (fs.existsSync(`/proc/${pid}`)) await Bun.sleep(10);
} finally {
  server.kill();
  backend.kill();
  fs.rmSync(dir, { recursive: true, force: true });
}
