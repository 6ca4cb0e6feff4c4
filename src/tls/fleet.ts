// An ACME cache directory shared by a fleet of parachute hosts behind one DNS
// name (`run --tls-acme-cache-path`, README "TLS"): they order each
// certificate once, under a lock file per host name and ACME directory, and
// load what another host ordered or renewed instead of ordering their own.
// HTTP-01 answers go into the directory as well, because the CA's validation
// request may reach any host of the fleet, not the one that ordered.
import * as fs from "node:fs";
import * as path from "node:path";
import { log } from "../log.ts";
import { writePrivate, type Certificate, type CertificateCache } from "./certificates.ts";
import { DEFAULT_LOCK_TIMING, FleetLock, type LockTiming } from "./fleet-lock.ts";

export interface Obtained {
  cert: string;
  key: string;
  /** "order": this host ordered it; "cache": another host had, and it was loaded. */
  from: "order" | "cache";
}

/**
 * An HTTP-01 token is base64url with at least 128 bits of entropy, so 22
 * characters or more (RFC 8555 §8.1, §8.3); nothing else is ever a file name.
 */
const TOKEN = /^[A-Za-z0-9_-]{22,256}$/;

/**
 * Look-ups in the shared directory allowed per second and process. Each is a
 * synchronous read on the request path, perhaps over the network (NFS), and
 * anyone can ask for made-up tokens; a CA validates a challenge with a few
 * requests. Beyond the budget, unknown tokens go to the app, as without a
 * shared cache.
 */
const LOOKUPS_PER_SECOND = 50;

/** The folder of the shared cache that holds the open HTTP-01 answers, one file per token. */
function challengesDir(cacheDir: string): string {
  return path.join(cacheDir, "challenges");
}

/** Reads the HTTP-01 answers that hosts of the fleet put in the shared cache `cacheDir` (any process: workers too). */
export class SharedChallenges {
  private windowStart = 0;
  private lookups = 0;

  constructor(private readonly cacheDir: string) {}

  read(token: string): string | undefined {
    if (!TOKEN.test(token) || !this.allowed()) return undefined;
    try {
      return fs.readFileSync(path.join(challengesDir(this.cacheDir), token), "utf8");
    } catch {
      return undefined;
    }
  }

  private allowed(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1_000) {
      this.windowStart = now;
      this.lookups = 0;
    }
    return ++this.lookups <= LOOKUPS_PER_SECOND;
  }
}

export class Fleet {
  /** The tokens this host put in the shared directory, to take them out when their challenge ends. */
  private readonly published = new Set<string>();
  private readonly shared: SharedChallenges;

  constructor(
    private readonly cache: CertificateCache,
    private readonly timing: LockTiming = DEFAULT_LOCK_TIMING,
  ) {
    this.shared = new SharedChallenges(cache.dir);
  }

  /**
   * The host's certificate from the directory, ordered at most once across
   * the fleet: under the lock, a certificate in the cache that `fresh`
   * accepts (another host ordered or renewed it while this one waited, or
   * before) is loaded; otherwise `order` runs, which must cache what it
   * gets: the lock is released after it, and the next holder looks there.
   */
  async obtain(host: string, directory: string, fresh: (cached: Certificate) => boolean, order: () => Promise<{ cert: string; key: string }>): Promise<Obtained> {
    const lock = new FleetLock(this.cache.lockFile(host, directory), this.timing);
    const lease = await lock.acquire((holder) =>
      log.info("Waiting for another host's certificate order", { host, directory, lock: lock.file, ...(holder ? { holder_host: holder.host, holder_pid: holder.pid, since: holder.since } : {}) }),
    );
    try {
      const cached = this.cache.load(host, directory);
      if (cached && fresh(cached)) return { cert: cached.cert, key: cached.key, from: "cache" };
      return { ...(await order()), from: "order" };
    } finally {
      lease.release();
    }
  }

  /** Mirrors this host's open HTTP-01 challenges into the shared directory: new ones written, ended ones removed. */
  publishChallenges(challenges: ReadonlyMap<string, string>) {
    const dir = challengesDir(this.cache.dir);
    for (const [token, keyAuthorization] of challenges) {
      if (this.published.has(token) || !TOKEN.test(token)) continue;
      try {
        fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
        writePrivate(path.join(dir, token), keyAuthorization);
        this.published.add(token);
      } catch (error) {
        log.error("Cannot share an ACME challenge with the fleet", { error: (error as Error).message });
      }
    }
    for (const token of this.published) {
      if (challenges.has(token)) continue;
      try {
        fs.rmSync(path.join(dir, token), { force: true });
        this.published.delete(token);
      } catch {
        // The share is unreachable: removed at the next change (an answer left behind only answers a finished challenge).
      }
    }
  }

  challenge(token: string): string | undefined {
    return this.shared.read(token);
  }
}
