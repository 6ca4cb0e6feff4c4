import { expect, test } from "bun:test";
import { hashValue, ROLLOUT_COOKIE, RolloutSplit } from "./rollout.ts";

const N = 10_000;
const values = Array.from({ length: N }, (_, i) => `client-${i}`);

test("the cookie is parachute-rollout", () => {
  expect(ROLLOUT_COOKIE).toBe("parachute-rollout");
});

test("0% chooses no one, 100% everyone with a cookie", () => {
  const none = new RolloutSplit(0);
  const all = new RolloutSplit(100);
  expect(values.filter((v) => none.chooses(v)).length).toBe(0);
  expect(values.filter((v) => all.chooses(v)).length).toBe(N);
  expect(new RolloutSplit().chooses("alice")).toBe(false); // default: 0%
});

test("no cookie, or an empty one, is never in the rollout, even at 100% or listed", () => {
  const split = new RolloutSplit(100, [""]);
  expect(split.chooses(undefined)).toBe(false);
  expect(split.chooses("")).toBe(false);
});

test("a listed value is always chosen, even at 0%; listing is exact", () => {
  const split = new RolloutSplit(0, ["beta", "qa-team"]);
  expect(split.chooses("beta")).toBe(true);
  expect(split.chooses("qa-team")).toBe(true);
  expect(split.chooses("Beta")).toBe(false);
  expect(split.chooses("beta2")).toBe(false);
  expect(split.chooses("qa")).toBe(false);
});

test("the same value always gets the same answer, from any split object", () => {
  for (const percent of [1, 10, 33, 50, 90]) {
    const first = values.slice(0, 500).map((v) => new RolloutSplit(percent).chooses(v));
    const again = values.slice(0, 500).map((v) => new RolloutSplit(percent).chooses(v));
    expect(again).toEqual(first);
    expect(first.some(Boolean)).toBe(true);
    expect(first.every(Boolean)).toBe(false);
  }
});

test("raising the percentage only adds clients: nobody already in the rollout leaves it", () => {
  for (let percent = 0; percent < 100; percent += 7) {
    const lower = new RolloutSplit(percent);
    const higher = new RolloutSplit(percent + 7);
    for (const v of values.slice(0, 2000)) if (lower.chooses(v)) expect(higher.chooses(v)).toBe(true);
  }
});

test("the hash is FNV-1a with the murmur3 finaliser, pinned so that clients keep their side across versions", () => {
  // Computed independently (BigInt FNV-1a 32 + fmix32).
  expect(hashValue("")).toBe(2872998923);
  expect(hashValue("a")).toBe(444641715);
  expect(hashValue("alice")).toBe(3927234078);
  expect(hashValue("client-0")).toBe(4168333135);
  expect(hashValue("parachute")).toBe(2912926437);
  for (const v of values.slice(0, 100)) {
    const h = hashValue(v);
    expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32).toBe(true);
  }
});

test("over 10,000 sequential values each percentage gets its share within 4 standard deviations of a fair split", () => {
  for (const percent of [1, 5, 10, 25, 50, 75, 90, 99]) {
    const split = new RolloutSplit(percent);
    const chosen = values.filter((v) => split.chooses(v)).length;
    const p = percent / 100;
    const bound = 4 * Math.sqrt(N * p * (1 - p)); // binomial: a uniform hash % 100
    expect(Math.abs(chosen - N * p)).toBeLessThanOrEqual(bound);
  }
});

test("each of the 100 buckets gets its share of sequential values (the finaliser spreads the low bits)", () => {
  const buckets = new Array<number>(100).fill(0);
  for (const v of values) buckets[hashValue(v) % 100]!++;
  const bound = 4 * Math.sqrt(N * 0.01 * 0.99);
  for (const count of buckets) expect(Math.abs(count - N / 100)).toBeLessThanOrEqual(bound);
});
