// HTTP Basic authentication (RFC 7617) in front of a service (README "Basic
// auth"). A request passes with an `Authorization: Basic` header whose user
// and password match an entry of the service's htpasswd file; any other gets
// 401 with a challenge, and the app never sees it.
//
// A bcrypt or argon2 verify costs tens of milliseconds of CPU, on every
// request a browser sends. A credential that verified is remembered for a
// short while, keyed by an HMAC of the header under a per-process random key,
// so neither the password nor anything that can be checked against it offline
// is kept.
import { hashValue } from "../service/rollout.ts";
import type { Credential } from "./htpasswd.ts";

/** How long a verified credential is remembered; a changed file takes effect on the next deploy anyway. */
export const VERIFIED_TTL_MS = 60_000;
/** At most this many verified credentials are remembered; the oldest go first. */
const VERIFIED_MAX = 1024;

const processKey = crypto.getRandomValues(new Uint8Array(32));

function cacheKey(header: string): string {
  const hasher = new Bun.CryptoHasher("sha256", processKey);
  hasher.update(header);
  return hasher.digest("base64");
}

/** The user and password of an `Authorization: Basic` value, or undefined when it is something else. */
export function basicCredentials(header: string): { user: string; password: string } | undefined {
  const space = header.indexOf(" ");
  // The scheme is case-insensitive (RFC 9110 §11.1).
  if (space === -1 || header.slice(0, space).toLowerCase() !== "basic") return undefined;
  const token = header.slice(space + 1).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(token)) return undefined;
  const decoded = Buffer.from(token, "base64").toString("utf8");
  // The user-id cannot hold a colon; the password can (RFC 7617 §2).
  const colon = decoded.indexOf(":");
  if (colon === -1) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

interface Verified {
  expires: number;
  /** Resolves true when the credential verified; shared by the requests that arrive while it runs. */
  result: Promise<boolean>;
  ok: boolean;
}

export class BasicAuth {
  private readonly users: Map<string, string>;
  /**
   * The file's hashes: an unknown user is verified against one of them,
   * picked by the name, so it costs what some known user's does. With one
   * kind and cost of hash in the file that is every user's time; with
   * several, a name's time says only which hash it was paired with, which an
   * unknown name shares with some real user.
   */
  private readonly decoys: string[];
  private readonly verified = new Map<string, Verified>();

  constructor(
    readonly entries: readonly Credential[],
    /** The realm of the challenge (RFC 7617 §2). */
    readonly realm: string,
  ) {
    this.users = new Map(entries);
    this.decoys = entries.map(([, hash]) => hash);
  }

  /** The WWW-Authenticate challenge of a 401. */
  get challenge(): string {
    return `Basic realm="${this.realm.replace(/["\\]/g, "\\$&")}", charset="UTF-8"`;
  }

  /**
   * Whether the request's Authorization value passes: `true` at once for a
   * credential verified in the last minute, otherwise a promise (the verify
   * runs on Bun's thread pool, off the event loop).
   */
  allows(header: string | undefined): boolean | Promise<boolean> {
    if (!header || this.users.size === 0) return false;
    const key = cacheKey(header);
    const now = Date.now();
    const known = this.verified.get(key);
    if (known && known.expires > now) return known.ok || known.result;
    if (known) this.verified.delete(key);
    const entry: Verified = { expires: now + VERIFIED_TTL_MS, ok: false, result: this.verify(header) };
    this.verified.set(key, entry);
    if (this.verified.size > VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
    entry.result.then((ok) => {
      entry.ok = ok;
      // Only successes are remembered: every wrong guess pays a full verify.
      if (!ok && this.verified.get(key) === entry) this.verified.delete(key);
    });
    return entry.result;
  }

  private decoyFor(user: string): string {
    return this.decoys[hashValue(user) % this.decoys.length] ?? "";
  }

  private async verify(header: string): Promise<boolean> {
    const credentials = basicCredentials(header);
    if (!credentials) return false;
    const hash = this.users.get(credentials.user);
    try {
      // One verify whatever the user: the time does not tell which users exist.
      const ok = await Bun.password.verify(credentials.password, hash ?? this.decoyFor(credentials.user));
      return ok && hash !== undefined;
    } catch {
      return false;
    }
  }
}
