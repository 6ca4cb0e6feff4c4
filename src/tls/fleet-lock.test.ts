import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { FleetLock, Lease, type LockTiming } from "./fleet-lock.ts";

const dirs: string[] = [];
function lockPath(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-lock-"));
  dirs.push(dir);
  return path.join(dir, "a.test.lock");
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const timing: LockTiming = { staleMs: 60_000, heartbeatMs: 20, pollMs: 10 };
const hostA = { pid: 7, host: "lb-1" };
const hostB = { pid: 7, host: "lb-2" };

function lease(result: ReturnType<FleetLock["tryAcquire"]>): Lease {
  if (!(result instanceof Lease)) throw new Error(`expected the lock, it is held by ${JSON.stringify(result.heldBy)}`);
  return result;
}

/** Ages the lock file's mtime, as if its holder stopped refreshing it `ms` ago. */
function age(file: string, ms: number) {
  const then = new Date(Date.now() - ms);
  fs.utimesSync(file, then, then);
}

test("a free lock is taken: the file says who holds it, 0600, and release removes it", () => {
  const file = lockPath();
  const held = lease(new FleetLock(file, timing, hostA).tryAcquire());
  const content = JSON.parse(fs.readFileSync(file, "utf8"));
  expect(content).toMatchObject({ pid: 7, host: "lb-1", token: held.holder.token });
  expect(Date.parse(content.since)).toBeGreaterThan(Date.now() - 5_000);
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(held.held()).toBe(true);
  held.release();
  expect(fs.existsSync(file)).toBe(false);
});

test("a lock another host holds is not taken, and tells who holds it", () => {
  const file = lockPath();
  const held = lease(new FleetLock(file, timing, hostA).tryAcquire());
  const result = new FleetLock(file, timing, hostB).tryAcquire();
  expect(result).not.toBeInstanceOf(Lease);
  expect((result as { heldBy: unknown }).heldBy).toMatchObject({ host: "lb-1", pid: 7, token: held.holder.token });
  expect(held.held()).toBe(true);
  held.release();
  lease(new FleetLock(file, timing, hostB).tryAcquire()).release();
});

test("a waiter is told once who holds the lock, and gets it once it is released", async () => {
  const file = lockPath();
  const held = lease(new FleetLock(file, timing, hostA).tryAcquire());
  const told: unknown[] = [];
  let acquired = false;
  const waiting = new FleetLock(file, timing, hostB).acquire((holder) => told.push(holder)).then((l) => {
    acquired = true;
    return l;
  });
  // Several polls pass while it is held.
  await Bun.sleep(timing.pollMs * 5);
  expect(acquired).toBe(false);
  expect(told).toEqual([expect.objectContaining({ host: "lb-1" })]);
  held.release();
  const second = await waiting;
  expect(second.holder.host).toBe("lb-2");
  expect(JSON.parse(fs.readFileSync(file, "utf8")).host).toBe("lb-2");
  second.release();
});

test("the holder's heartbeat keeps the lock fresh, so it is not taken over while held", async () => {
  const file = lockPath();
  const held = lease(new FleetLock(file, { ...timing, staleMs: 1_000 }, hostA).tryAcquire());
  age(file, 5_000);
  await Bun.sleep(timing.heartbeatMs * 4);
  expect(Date.now() - fs.statSync(file).mtimeMs).toBeLessThan(1_000);
  expect(new FleetLock(file, { ...timing, staleMs: 1_000 }, hostB).tryAcquire()).not.toBeInstanceOf(Lease);
  held.release();
});

test("a stale lock (its holder crashed: no refresh for staleMs) is taken over; the old holder no longer holds it and its release leaves the new lock", () => {
  const file = lockPath();
  const crashed = lease(new FleetLock(file, timing, hostA).tryAcquire());
  // A crash: the heartbeat stops.
  clearInterval((crashed as unknown as { heartbeat: ReturnType<typeof setInterval> }).heartbeat);
  age(file, timing.staleMs - 5_000);
  expect(new FleetLock(file, timing, hostB).tryAcquire()).not.toBeInstanceOf(Lease);
  age(file, timing.staleMs + 1_000);
  const taken = lease(new FleetLock(file, timing, hostB).tryAcquire());
  expect(JSON.parse(fs.readFileSync(file, "utf8")).host).toBe("lb-2");
  expect(crashed.held()).toBe(false);
  crashed.release();
  expect(fs.existsSync(file)).toBe(true);
  expect(taken.held()).toBe(true);
  taken.release();
  // Nothing is left beside it (the stale file was moved aside, then removed).
  expect(fs.readdirSync(path.dirname(file))).toEqual([]);
});

test("an empty lock file (a holder that died between create and write) is judged by its age", () => {
  const file = lockPath();
  fs.writeFileSync(file, "");
  const fresh = new FleetLock(file, timing, hostB).tryAcquire();
  expect(fresh).toEqual({ heldBy: undefined });
  age(file, timing.staleMs + 1_000);
  lease(new FleetLock(file, timing, hostB).tryAcquire()).release();
});

test("of two waiters that find the same stale lock, exactly one takes it", () => {
  const file = lockPath();
  fs.writeFileSync(file, JSON.stringify({ pid: 1, host: "lb-0", since: new Date(0).toISOString(), token: "old" }));
  age(file, timing.staleMs + 1_000);
  const results = [new FleetLock(file, timing, hostA).tryAcquire(), new FleetLock(file, timing, hostB).tryAcquire()];
  const leases = results.filter((r): r is Lease => r instanceof Lease);
  expect(leases).toHaveLength(1);
  expect(results[1]).toEqual({ heldBy: expect.objectContaining({ host: "lb-1" }) });
  leases[0]!.release();
});

/** Runs a bun process that takes the lock, then makes it end as `end` says; resolves once it has exited. */
async function holderProcess(file: string, end: "exit" | "SIGKILL") {
  const script = `
    import { FleetLock, Lease } from ${JSON.stringify(path.join(import.meta.dir, "fleet-lock.ts"))};
    const lease = new FleetLock(${JSON.stringify(file)}).tryAcquire();
    if (!(lease instanceof Lease)) process.exit(2);
    process.on("SIGUSR2", () => process.exit(0));
    console.log("held");
    setInterval(() => {}, 1000);
  `;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  expect(first).toContain("held");
  expect(fs.existsSync(file)).toBe(true);
  // SIGUSR2: the holder exits as a stop does, by process.exit.
  proc.kill(end === "exit" ? "SIGUSR2" : "SIGKILL");
  await proc.exited;
  return proc;
}

test("a process that exits (a stop, or an upgrade cutting an order short) releases the locks it holds", async () => {
  const file = lockPath();
  const proc = await holderProcess(file, "exit");
  expect(proc.exitCode).toBe(0);
  expect(fs.existsSync(file)).toBe(false);
});

test("a killed process leaves its lock behind, to go stale", async () => {
  const file = lockPath();
  await holderProcess(file, "SIGKILL");
  expect(fs.existsSync(file)).toBe(true);
  expect(new FleetLock(file, timing, hostB).tryAcquire()).not.toBeInstanceOf(Lease);
  age(file, timing.staleMs + 1_000);
  lease(new FleetLock(file, timing, hostB).tryAcquire()).release();
});
