import { expect, test } from "bun:test";
import { defaultOptions } from "../service/options.ts";
import { Service } from "../service/service.ts";
import { Target } from "../service/target.ts";
import { publishedHealth } from "./published-health.ts";

function service(name: string, ...health: Target["health"][]): Service {
  return new Service(
    name,
    defaultOptions(),
    health.map((h, i) => {
      const target = new Target(`127.0.0.1:${3000 + i}`);
      target.health = h;
      return target;
    }),
  );
}

const services = new Map([
  ["web", service("web", "unhealthy", "healthy")],
  ["down", service("down", "unhealthy", "adding")],
]);
const lookup = (name: string) => services.get(name);

test("the proxy's own health: 200 while serving, 503 once leaving", () => {
  expect(publishedHealth("/.parachute/health", false, lookup)).toEqual({ status: 200, body: "OK\n" });
  expect(publishedHealth("/.parachute/health", true, lookup)?.status).toBe(503);
});

test("a service's health: 200 with a healthy target, 503 without, 404 for an unknown service", () => {
  expect(publishedHealth("/.parachute/web/health", false, lookup)?.status).toBe(200);
  expect(publishedHealth("/.parachute/down/health", false, lookup)).toEqual({ status: 503, body: "no healthy target\n" });
  expect(publishedHealth("/.parachute/nope/health", false, lookup)).toEqual({ status: 404, body: "no service nope\n" });
});

test("a service's health does not follow the proxy's leaving state: it is about the app", () => {
  expect(publishedHealth("/.parachute/web/health", true, lookup)?.status).toBe(200);
});

test("other paths under /.parachute/ are not the proxy's: they go on to routing", () => {
  for (const path of ["/.parachute/", "/.parachute/healthz", "/.parachute/web/status", "/.parachute//health", "/.parachute/a/b/health"]) {
    expect(publishedHealth(path, false, lookup)).toBeUndefined();
  }
});
