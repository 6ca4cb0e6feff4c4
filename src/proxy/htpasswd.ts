// The credentials of `deploy --basic-auth-file` (README "Basic auth"): an
// htpasswd file, one `user:hash` a line, whose hashes must be bcrypt or
// argon2 (what Bun.password verifies, and hashes that are slow to crack).
// The file is read at deploy; the entries are kept with the service (and in
// the state file), so restarts and workers never read it again.
import * as fs from "node:fs";

/** One user of the file: its name and its hash, as written. */
export type Credential = [user: string, hash: string];

/** bcrypt as `htpasswd -B` ($2y$), OpenBSD ($2b$) and older tools ($2a$) write it: cost, then 53 characters of salt and hash. */
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;
/** argon2 in the PHC string format (RFC 9106 and the PHC spec), as Bun.password.hash and the argon2 tool write it. */
const ARGON2 = /^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/;

/** What other htpasswd hash kinds are, to name them in the error. */
function hashKind(hash: string): string {
  if (hash.startsWith("$apr1$")) return "an MD5 (apr1) hash";
  if (hash.startsWith("{SHA}")) return "a SHA-1 hash";
  if (hash.startsWith("$1$")) return "an MD5-crypt hash";
  if (hash.startsWith("$5$") || hash.startsWith("$6$")) return "a SHA-crypt hash";
  if (hash.startsWith("$2")) return "a malformed bcrypt hash";
  if (hash.startsWith("$argon2")) return "a malformed argon2 hash";
  if (/^[./A-Za-z0-9]{13}$/.test(hash)) return "a DES-crypt hash";
  return "no hash (a plaintext password?)";
}

/**
 * The entries of an htpasswd text. Blank lines and `#` comments are skipped;
 * anything else must be `user:hash` with a bcrypt or argon2 hash. Errors name
 * `source` (the file) and the line.
 */
export function parseHtpasswd(text: string, source: string): Credential[] {
  const entries: Credential[] = [];
  const seen = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const where = `${source} line ${i + 1}`;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`${where}: expected user:hash`);
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!BCRYPT.test(hash) && !ARGON2.test(hash)) {
      throw new Error(`${where}: user "${user}" has ${hashKind(hash)}; only bcrypt (htpasswd -B) and argon2 hashes are accepted`);
    }
    if (seen.has(user)) throw new Error(`${where}: user "${user}" appears twice`);
    seen.add(user);
    entries.push([user, hash]);
  }
  if (!entries.length) throw new Error(`${source}: no user:hash line`);
  return entries;
}

/** Reads and parses an htpasswd file; a missing or malformed file is an error naming it. */
export function loadHtpasswd(file: string): Credential[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    throw new Error(`cannot read basic auth file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseHtpasswd(text, file);
}
