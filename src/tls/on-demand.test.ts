import { expect, test } from "bun:test";
import { Router } from "../routing/router.ts";
import { defaultOptions } from "../service/options.ts";
import { Service } from "../service/service.ts";
import { Target } from "../service/target.ts";
import { askRequest, issuableName, OnDemandGate, onDemandServiceFor, REFUSAL_MEMORY_MS, TokenBucket, type Verdict } from "./on-demand.ts";

const onDemand = (name: string, url: string, hosts: string[] = [], targets: Target[] = []) =>
  new Service(name, defaultOptions({ tls: true, tlsOnDemandUrl: url, hosts }), targets);

test("the token bucket gives `rate` at once, then `rate` per second", () => {
  let now = 0;
  const bucket = new TokenBucket(3, () => now);
  expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
  now += 333;
  expect(bucket.take()).toBe(false);
  now += 1;
  expect(bucket.take()).toBe(true);
  now += 10_000;
  expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
});

test("only DNS names of two labels or more are issuable", () => {
  for (const good of ["a.test", "shop-1.example.com", "x.y.z.example"]) expect(issuableName(good)).toBe(true);
  for (const bad of ["localhost", "a..test", "-a.test", "a-.test", "a_b.test", "*.test", "../x.test", `${"a".repeat(64)}.test`, "é.test"]) {
    expect(issuableName(bad)).toBe(false);
  }
});

test("the on-demand service is the one routing picks for the host, if it has the URL", () => {
  const shops = onDemand("shops", "/allow", ["*.shops.test"]);
  const plain = new Service("plain", defaultOptions({ hosts: ["app.test"] }), []);
  const rest = onDemand("rest", "https://allow.example/check");
  const router = new Router([shops, plain, rest]);
  expect(onDemandServiceFor(router, "a.shops.test")).toBe(shops);
  expect(onDemandServiceFor(router, "app.test")).toBeUndefined();
  expect(onDemandServiceFor(router, "other.example")).toBe(rest);
});

test("the ask: the URL with ?host=, or the path on a target with the host as Host header", () => {
  const external = askRequest(onDemand("a", "https://allow.example/check?token=x"), "shop.test")!;
  expect(external.url.toString()).toBe("https://allow.example/check?token=x&host=shop.test");
  expect(external.headers).toEqual({});
  const target = new Target("127.0.0.1:3000");
  target.health = "healthy";
  const local = askRequest(onDemand("b", "/allow", [], [target]), "shop.test")!;
  expect(local.url.toString()).toBe("http://127.0.0.1:3000/allow?host=shop.test");
  expect(local.headers).toEqual({ host: "shop.test" });
  expect(askRequest(onDemand("c", "/allow"), "shop.test")).toBeUndefined();
});

test("the gate: one ask per host at a time, refusals remembered for a while, asks within the service's rate", async () => {
  let now = 0;
  const asked: string[] = [];
  const answers = new Map<string, (v: Verdict) => void>();
  const gate = new OnDemandGate(
    2,
    (_service, host) => {
      asked.push(host);
      return new Promise((resolve) => answers.set(host, resolve));
    },
    () => now,
  );
  const shops = onDemand("shops", "/allow");
  const other = onDemand("other", "/allow");
  const first = gate.check(shops, "a.test");
  const again = gate.check(shops, "a.test");
  expect(asked).toEqual(["a.test"]);
  answers.get("a.test")!({ allowed: false, reason: "403", asked: true });
  expect(await first).toEqual({ allowed: false, reason: "403", asked: true });
  expect(await again).toEqual({ allowed: false, reason: "403", asked: true });
  // Refused a moment ago: not asked again until the memory expires.
  expect(await gate.check(shops, "a.test")).toMatchObject({ allowed: false, asked: false });
  expect(asked).toEqual(["a.test"]);
  // The rate: one token left for shops this second; another service has its own.
  void gate.check(shops, "b.test");
  expect(await gate.check(shops, "c.test")).toEqual({ allowed: false, reason: "too many hosts asked about; not asked", asked: false });
  void gate.check(other, "d.test");
  expect(asked).toEqual(["a.test", "b.test", "d.test"]);
  expect(await gate.check(shops, "not a name")).toMatchObject({ allowed: false, asked: false });
  now += REFUSAL_MEMORY_MS;
  const later = gate.check(shops, "a.test");
  expect(asked.at(-1)).toBe("a.test");
  answers.get("a.test")!({ allowed: true });
  expect(await later).toEqual({ allowed: true });
});
