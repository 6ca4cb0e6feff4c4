import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadHtpasswd, parseHtpasswd } from "./htpasswd.ts";

// Real hashes of "secret" (low cost): bcrypt as `htpasswd -B` writes it ($2y$), and argon2id as Bun.password.hash does.
const BCRYPT = "$2y$04$G/Oz0iUVI4sr2Eniatk9AeFGLMutZOK4DsBGeHDTjtb0sL6Jmykvq";
const ARGON2 = "$argon2id$v=19$m=16,t=2,p=1$E/ukPvzLiW5Ky1Her3hrSglx/TTSMUYoU0rCj+2dJFc$caEwVKDQ1wWXb5RWcUZrsqZp0mPA+GhMQhzGpXlOhbc";

test("user:hash lines with bcrypt and argon2 hashes; blank lines and comments are skipped", () => {
  const text = `# staging users\nalice:${BCRYPT}\r\n\n  bob:${ARGON2}  \n`;
  expect(parseHtpasswd(text, "/etc/users")).toEqual([
    ["alice", BCRYPT],
    ["bob", ARGON2],
  ]);
});

test("other hash kinds are refused, naming the file, the line, the user and the kind", () => {
  const cases: [string, RegExp][] = [
    ["carol:$apr1$3LnR0Hcz$Y9TPlMqm1vdPaWFeXRZpB/", /\/etc\/users line 2: user "carol" has an MD5 \(apr1\) hash; only bcrypt \(htpasswd -B\) and argon2/],
    ["carol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", /line 2: user "carol" has a SHA-1 hash/],
    ["carol:$6$salt$abc", /line 2: user "carol" has a SHA-crypt hash/],
    ["carol:rl.3jHJuIwVKk", /line 2: user "carol" has a DES-crypt hash/],
    ["carol:hunter2", /line 2: user "carol" has no hash \(a plaintext password\?\)/],
    ["carol:$2y$10$tooshort", /line 2: user "carol" has a malformed bcrypt hash/],
  ];
  for (const [line, message] of cases) expect(() => parseHtpasswd(`alice:${BCRYPT}\n${line}\n`, "/etc/users")).toThrow(message);
});

test("a line without user:hash, a user twice, or no user at all is an error", () => {
  expect(() => parseHtpasswd(`just-a-name\n`, "f")).toThrow("f line 1: expected user:hash");
  expect(() => parseHtpasswd(`:${BCRYPT}\n`, "f")).toThrow("f line 1: expected user:hash");
  expect(() => parseHtpasswd(`alice:${BCRYPT}\nalice:${ARGON2}\n`, "f")).toThrow('f line 2: user "alice" appears twice');
  expect(() => parseHtpasswd("# nobody yet\n\n", "f")).toThrow("f: no user:hash line");
});

test("a missing file is an error naming it", () => {
  const missing = path.join(os.tmpdir(), `parachute-no-such-${process.pid}.htpasswd`);
  expect(() => loadHtpasswd(missing)).toThrow(`cannot read basic auth file ${missing}: ENOENT`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "htpasswd-"));
  fs.writeFileSync(path.join(dir, "users"), `alice:${BCRYPT}\n`);
  expect(loadHtpasswd(path.join(dir, "users"))).toEqual([["alice", BCRYPT]]);
  fs.rmSync(dir, { recursive: true });
});
