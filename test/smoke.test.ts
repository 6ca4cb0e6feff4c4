import { afterAll, beforeAll, expect, test } from "bun:test";
import { startBackend, type Backend } from "./support/backend.ts";
import { Proxy } from "./support/proxy.ts";

let proxy: Proxy;
let backend: Backend;

beforeAll(async () => {
  backend = startBackend("smoke");
  proxy = await Proxy.start();
});

afterAll(async () => {
  await proxy.stop();
  await backend.stop();
});

test("deploy a service and reach it through the proxy", async () => {
  const deploy = await proxy.cli(["deploy", "web", "--target", backend.address]);
  expect(deploy.stderr).toContain(`Target ${backend.address}: healthy`);
  expect(deploy.code).toBe(0);
  const res = await proxy.fetch("/hello?x=1");
  expect(res.status).toBe(200);
  const body = (await res.json()) as { backend: string; url: string };
  expect(body.backend).toBe("smoke");
  expect(new URL(body.url).pathname + new URL(body.url).search).toBe("/hello?x=1");
});
