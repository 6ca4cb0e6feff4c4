import { expect, test } from "bun:test";
import { Balancer } from "./balancer.ts";
import { Target, type TargetHealth } from "./target.ts";

function target(address: string, health: TargetHealth = "healthy"): Target {
  const t = new Target(address);
  t.health = health;
  return t;
}
const picks = (b: Balancer, n: number, loneFallback?: boolean) => Array.from({ length: n }, () => b.pick(loneFallback)?.address);

test("round robin over every target while all are healthy", () => {
  const b = new Balancer([target("a:1"), target("b:1"), target("c:1")]);
  expect(picks(b, 7)).toEqual(["a:1", "b:1", "c:1", "a:1", "b:1", "c:1", "a:1"]);
});

test("unhealthy and still-adding targets are skipped", () => {
  const b = new Balancer([target("a:1", "unhealthy"), target("b:1"), target("c:1", "adding"), target("d:1")]);
  expect(picks(b, 5)).toEqual(["b:1", "d:1", "b:1", "d:1", "b:1"]);
});

test("the rotation follows health as it changes, without restarting", () => {
  const [a, b, c] = [target("a:1"), target("b:1"), target("c:1")];
  const balancer = new Balancer([a, b, c]);
  expect(balancer.pick()?.address).toBe("a:1");
  b.health = "unhealthy";
  expect(balancer.pick()?.address).toBe("c:1");
  expect(balancer.pick()?.address).toBe("a:1");
  b.health = "healthy";
  expect(picks(balancer, 3)).toEqual(["b:1", "c:1", "a:1"]);
});

test("no healthy target in a set of several: nothing", () => {
  const b = new Balancer([target("a:1", "unhealthy"), target("b:1", "adding")]);
  expect(b.pick()).toBeUndefined();
  expect(b.pick(false)).toBeUndefined();
});

test("an empty set gives nothing", () => {
  const b = new Balancer([]);
  expect(b.pick()).toBeUndefined();
  expect(b.pick(false)).toBeUndefined();
});

test("a lone target is used while it fails its checks, but not before its first healthy check", () => {
  const only = target("w:1", "unhealthy");
  const b = new Balancer([only]);
  expect(picks(b, 3)).toEqual(["w:1", "w:1", "w:1"]);
  only.health = "adding";
  expect(b.pick()).toBeUndefined();
  only.health = "healthy";
  expect(b.pick()).toBe(only);
});

test("without loneFallback a lone target must be healthy", () => {
  const only = target("r:1", "unhealthy");
  const b = new Balancer([only]);
  expect(b.pick(false)).toBeUndefined();
  only.health = "healthy";
  expect(picks(b, 2, false)).toEqual(["r:1", "r:1"]);
});

test("the lone-target rule is for a set of one only: two unhealthy targets give nothing", () => {
  const b = new Balancer([target("a:1", "unhealthy"), target("b:1", "unhealthy")]);
  expect(b.pick(true)).toBeUndefined();
});
