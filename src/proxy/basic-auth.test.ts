import { expect, test } from "bun:test";
import { BasicAuth, basicCredentials } from "./basic-auth.ts";

// Hashes of "secret" (low cost, so the test is quick): bcrypt ($2y$, as `htpasswd -B` writes it) and argon2id.
const BCRYPT = "$2y$04$G/Oz0iUVI4sr2Eniatk9AeFGLMutZOK4DsBGeHDTjtb0sL6Jmykvq";
const ARGON2 = "$argon2id$v=19$m=16,t=2,p=1$E/ukPvzLiW5Ky1Her3hrSglx/TTSMUYoU0rCj+2dJFc$caEwVKDQ1wWXb5RWcUZrsqZp0mPA+GhMQhzGpXlOhbc";
const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString("base64")}`;

test("an Authorization value: the Basic scheme in any case, user up to the first colon (RFC 7617 §2)", () => {
  expect(basicCredentials(basic("alice:se:cret"))).toEqual({ user: "alice", password: "se:cret" });
  expect(basicCredentials(`bAsIc ${Buffer.from("ü:ß").toString("base64")}`)).toEqual({ user: "ü", password: "ß" });
  expect(basicCredentials(basic("no-colon"))).toBeUndefined();
  expect(basicCredentials("Bearer abc")).toBeUndefined();
  expect(basicCredentials("Basic not base64!")).toBeUndefined();
  expect(basicCredentials("Basic")).toBeUndefined();
});

test("the right password of a bcrypt or argon2 user passes; a wrong one, an unknown user or no header does not", async () => {
  const auth = new BasicAuth(
    [
      ["alice", BCRYPT],
      ["bob", ARGON2],
    ],
    "staging",
  );
  expect(await auth.allows(basic("alice:secret"))).toBe(true);
  expect(await auth.allows(basic("bob:secret"))).toBe(true);
  expect(await auth.allows(basic("alice:wrong"))).toBe(false);
  expect(await auth.allows(basic("mallory:secret"))).toBe(false);
  expect(await auth.allows(undefined)).toBe(false);
  expect(await auth.allows("Bearer token")).toBe(false);
});

test("a verified credential passes at once for a while; a failed one is verified again each time", async () => {
  const auth = new BasicAuth([["alice", BCRYPT]], "staging");
  const first = auth.allows(basic("alice:secret"));
  expect(first).toBeInstanceOf(Promise);
  // Requests arriving while it is verified share the one verify.
  expect(auth.allows(basic("alice:secret"))).toBe(first);
  expect(await first).toBe(true);
  expect(auth.allows(basic("alice:secret"))).toBe(true);
  const wrong = auth.allows(basic("alice:wrong"));
  expect(await wrong).toBe(false);
  const again = auth.allows(basic("alice:wrong"));
  expect(again).toBeInstanceOf(Promise);
  expect(again).not.toBe(wrong);
  expect(await again).toBe(false);
});

test("an unknown user costs a verify too, against one of the file's hashes", async () => {
  // The decoy is a real hash, so the time of an unknown user is that of a known one with a wrong password.
  const auth = new BasicAuth([["alice", "$2y$08$G/Oz0iUVI4sr2Eniatk9AeFGLMutZOK4DsBGeHDTjtb0sL6Jmykvq"]], "staging");
  const time = async (header: string) => {
    const started = performance.now();
    await auth.allows(header);
    return performance.now() - started;
  };
  const known = await time(basic("alice:wrong"));
  const unknown = await time(basic("mallory:wrong"));
  // Cost 8 is about 256 rounds of the key schedule: several milliseconds either way, never the microseconds of a skipped verify.
  expect(known).toBeGreaterThan(2);
  expect(unknown).toBeGreaterThan(2);
});

test("no users (credentials lost) refuses everything; the challenge names the realm", async () => {
  const auth = new BasicAuth([], "my-app");
  expect(auth.allows(basic("alice:secret"))).toBe(false);
  expect(auth.challenge).toBe('Basic realm="my-app", charset="UTF-8"');
});
