import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CertificateCache, type Certificate } from "./certificates.ts";
import { Fleet, SharedChallenges } from "./fleet.ts";
import { selfSignedCertificate } from "./self-signed.ts";

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-fleet-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const DIRECTORY = "https://ca.test/dir";
const timing = { staleMs: 60_000, heartbeatMs: 1_000, pollMs: 10 };
const always = () => true;

/** Two hosts of a fleet: each its own Fleet and cache object, one directory. */
function twoHosts() {
  const dir = tempDir();
  const caches = [new CertificateCache(dir), new CertificateCache(dir)];
  return { dir, caches, fleets: caches.map((cache) => new Fleet(cache, timing)) };
}

/** An order that takes `ms` and caches what it gets, as the manager's does; counts its calls. */
function ordering(cache: CertificateCache, calls: { n: number }, ms = 50) {
  return async () => {
    calls.n++;
    await Bun.sleep(ms);
    const pair = selfSignedCertificate("a.test", 30);
    cache.save("a.test", DIRECTORY, pair.cert, pair.key);
    return pair;
  };
}

test("two hosts obtaining one name at once: one orders, the other waits and loads its certificate", async () => {
  const { caches, fleets } = twoHosts();
  const calls = { n: 0 };
  const [a, b] = await Promise.all(fleets.map((fleet, i) => fleet.obtain("a.test", DIRECTORY, always, ordering(caches[i]!, calls))));
  expect(calls.n).toBe(1);
  expect([a!.from, b!.from].sort()).toEqual(["cache", "order"]);
  expect(a!.cert).toBe(b!.cert);
  expect(a!.key).toBe(b!.key);
  // The lock is gone once both are done.
  expect(fs.readdirSync(path.dirname(caches[0]!.lockFile("a.test", DIRECTORY))).filter((f) => f.endsWith(".lock"))).toEqual([]);
});

test("a cached certificate that is not fresh enough (due for renewal) is ordered again, under the lock", async () => {
  const { caches, fleets } = twoHosts();
  const old = selfSignedCertificate("a.test", 30);
  caches[0]!.save("a.test", DIRECTORY, old.cert, old.key);
  const calls = { n: 0 };
  const notOld = (c: Certificate) => c.cert !== old.cert;
  const [a, b] = await Promise.all(fleets.map((fleet, i) => fleet.obtain("a.test", DIRECTORY, notOld, ordering(caches[i]!, calls))));
  // The first renews; the second finds the renewed one under the lock.
  expect(calls.n).toBe(1);
  expect(a!.cert).toBe(b!.cert);
  expect(a!.cert).not.toBe(old.cert);
});

test("a failed order releases the lock: the waiting host orders itself", async () => {
  const { caches, fleets } = twoHosts();
  const calls = { n: 0 };
  const failing = async () => {
    calls.n++;
    await Bun.sleep(30);
    throw new Error("CA says no");
  };
  const first = fleets[0]!.obtain("a.test", DIRECTORY, always, failing);
  const second = fleets[1]!.obtain("a.test", DIRECTORY, always, ordering(caches[1]!, calls));
  await expect(first).rejects.toThrow("CA says no");
  expect((await second).from).toBe("order");
  expect(calls.n).toBe(2);
});

test("HTTP-01 answers are shared: published by one host, answered from the directory by another, removed when the challenge ends", () => {
  const { dir, fleets } = twoHosts();
  const token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
  const open = new Map([[token, `${token}.thumbprint`]]);
  fleets[0]!.publishChallenges(open);
  expect(fleets[1]!.challenge(token)).toBe(`${token}.thumbprint`);
  expect(new SharedChallenges(dir).read(token)).toBe(`${token}.thumbprint`);
  expect(fs.statSync(path.join(dir, "challenges", token)).mode & 0o777).toBe(0o600);
  open.clear();
  fleets[0]!.publishChallenges(open);
  expect(fleets[1]!.challenge(token)).toBeUndefined();
  expect(fs.readdirSync(path.join(dir, "challenges"))).toEqual([]);
});

test("only base64url tokens of 128 bits or more are looked up: a path in a token reads nothing", () => {
  const { dir } = twoHosts();
  fs.mkdirSync(path.join(dir, "challenges"));
  fs.writeFileSync(path.join(dir, "account.key"), "secret");
  fs.writeFileSync(path.join(dir, "challenges", "short"), "short.thumbprint");
  const reader = new SharedChallenges(dir);
  expect(reader.read("../account.key")).toBeUndefined();
  expect(reader.read("..%2Faccount.key")).toBeUndefined();
  expect(reader.read("short")).toBeUndefined();
  expect(reader.read("")).toBeUndefined();
});

test("look-ups are bounded per second, so a scan of made-up tokens cannot keep a process reading the shared directory", () => {
  const { dir } = twoHosts();
  const token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
  fs.mkdirSync(path.join(dir, "challenges"));
  fs.writeFileSync(path.join(dir, "challenges", token), "answer");
  const reader = new SharedChallenges(dir);
  const start = Date.now();
  let answered = 0;
  for (let i = 0; i < 200; i++) if (reader.read(token) === "answer") answered++;
  // All within one second window (the loop takes milliseconds): exactly the budget.
  expect(Date.now() - start).toBeLessThan(1_000);
  expect(answered).toBe(50);
});
