// A lock file that lets several parachute hosts sharing one ACME cache
// directory (`run --tls-acme-cache-path`, README "TLS") order each name one at
// a time. Bun has no flock(2) without FFI, and flock is unreliable on network
// file systems anyway, so the lock is the file's existence: created with
// O_CREAT|O_EXCL (`wx`), which is atomic on local file systems and on NFSv3+.
// It holds who took it (pid, hostname, time), for the logs and for telling
// one acquisition from the next. A holder refreshes its mtime while it works;
// a lock not refreshed for `staleMs` (its holder crashed, stalled or lost the
// share) is taken over. Liveness is judged by that age alone, not by the pid:
// containers on different machines often share a hostname and pid numbers
// (docs/choices.md).
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import { log } from "../log.ts";

export interface LockHolder {
  pid: number;
  host: string;
  /** When it was taken (ISO 8601). */
  since: string;
  /** Unique per acquisition: tells a lock apart from a later one at the same path. */
  token: string;
}

export interface LockTiming {
  /** A lock whose file was not refreshed for this long is stale. */
  staleMs: number;
  /** How often a holder refreshes it (well under `staleMs`). */
  heartbeatMs: number;
  /** How often a waiter looks again. */
  pollMs: number;
}

export const DEFAULT_LOCK_TIMING: LockTiming = { staleMs: 120_000, heartbeatMs: 20_000, pollMs: 500 };

/**
 * The leases this process holds, released when it exits (a stop or an
 * upgrade cutting an order short), so the fleet need not wait for them to go
 * stale. Only a crash or SIGKILL leaves one behind.
 */
const leases = new Set<Lease>();
let releaseAtExit = false;

/** A held lock: refreshed in the background until released. */
export class Lease {
  private readonly heartbeat: ReturnType<typeof setInterval>;

  constructor(
    readonly file: string,
    readonly holder: LockHolder,
    heartbeatMs: number,
  ) {
    this.heartbeat = setInterval(() => this.refresh(), heartbeatMs);
    this.heartbeat.unref?.();
    leases.add(this);
    if (!releaseAtExit) process.once("exit", () => [...leases].forEach((lease) => lease.release()));
    releaseAtExit = true;
  }

  /** Still ours? (Not if it was taken over as stale, e.g. after this process stalled.) */
  held(): boolean {
    return readHolder(this.file)?.token === this.holder.token;
  }

  private refresh() {
    if (!this.held()) return;
    const now = new Date();
    try {
      fs.utimesSync(this.file, now, now);
    } catch {
      // Gone or unreachable: the next refresh tries again, and a waiter may take it over.
    }
  }

  /** Removes the file if it is still ours; a lock taken over meanwhile is left to its new holder. */
  release() {
    clearInterval(this.heartbeat);
    leases.delete(this);
    if (!this.held()) return;
    try {
      fs.unlinkSync(this.file);
    } catch {
      // Already gone.
    }
  }
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, "utf8")) as LockHolder;
    return typeof parsed?.token === "string" ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export class FleetLock {
  constructor(
    readonly file: string,
    private readonly timing: LockTiming = DEFAULT_LOCK_TIMING,
    private readonly self: { pid: number; host: string } = { pid: process.pid, host: os.hostname() },
  ) {}

  /** Takes the lock if it is free (or stale); otherwise returns who holds it. */
  tryAcquire(): Lease | { heldBy: LockHolder | undefined } {
    const holder: LockHolder = { ...this.self, since: new Date().toISOString(), token: randomUUID() };
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(this.file, "wx", 0o600);
        try {
          fs.writeSync(fd, JSON.stringify(holder));
        } finally {
          fs.closeSync(fd);
        }
        return new Lease(this.file, holder, this.timing.heartbeatMs);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const current = readHolder(this.file);
      if (!this.isStale() || !this.takeOver(current)) return { heldBy: current };
    }
    return { heldBy: readHolder(this.file) };
  }

  /** Waits until the lock is free, then takes it; `onWait` is told once who holds it. */
  async acquire(onWait: (holder: LockHolder | undefined) => void = () => {}): Promise<Lease> {
    let told = false;
    for (;;) {
      const result = this.tryAcquire();
      if (result instanceof Lease) return result;
      if (!told) onWait(result.heldBy);
      told = true;
      await Bun.sleep(this.timing.pollMs);
    }
  }

  /** Stale: not refreshed for `staleMs` (the clocks of the hosts sharing the directory are assumed in sync, as TLS needs anyway). */
  private isStale(): boolean {
    try {
      return Date.now() - fs.statSync(this.file).mtimeMs > this.timing.staleMs;
    } catch {
      // Gone meanwhile: free.
      return true;
    }
  }

  /**
   * Removes a stale lock so that the next O_EXCL create competes for it. Two
   * waiters may judge the same lock stale: the file is first renamed away,
   * which only one of them can do, and if what was renamed turns out to be a
   * fresh lock (taken by a third in between), it is put back.
   */
  private takeOver(stale: LockHolder | undefined): boolean {
    const aside = `${this.file}.stale-${randomUUID()}`;
    try {
      fs.renameSync(this.file, aside);
    } catch {
      // Someone else moved or released it: try the create again.
      return true;
    }
    const moved = readHolder(aside);
    if (moved?.token !== stale?.token) {
      try {
        fs.linkSync(aside, this.file);
      } catch {
        // Another lock is there already.
      }
      fs.rmSync(aside, { force: true });
      return false;
    }
    fs.rmSync(aside, { force: true });
    log.warn("Took over a stale certificate lock", { lock: this.file, ...(stale ? { holder_host: stale.host, holder_pid: stale.pid, since: stale.since } : {}) });
    return true;
  }
}
