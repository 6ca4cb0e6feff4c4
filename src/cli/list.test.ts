import { expect, test } from "bun:test";
import type { ServiceView } from "../service/view.ts";
import { renderTable } from "./list.ts";

const web: ServiceView = {
  name: "web",
  hosts: ["app.test", "www.app.test"],
  pathPrefixes: ["/"],
  tls: true,
  state: "running",
  targets: [
    { address: "web-1:3000", state: "healthy", role: "writer", lastCheck: "GET /up returned 200" },
    { address: "web-2:3000", state: "unhealthy", role: "reader", lastCheck: "GET /up returned 200" },
    { address: "web-0:3000", state: "draining", role: "draining", lastCheck: "GET /up returned 200" },
  ],
};

test("one aligned row per target; readers marked; the last column unpadded", () => {
  expect(renderTable([web]).split("\n")).toEqual([
    "SERVICE  HOST                   PATH  TARGET      STATE               TLS",
    "web      app.test,www.app.test  /     web-1:3000  healthy             yes",
    "web      app.test,www.app.test  /     web-2:3000  unhealthy [reader]  yes",
    "web      app.test,www.app.test  /     web-0:3000  draining            yes",
  ]);
});

test("a catch-all shows * as its host; a paused or stopped service says so on each target", () => {
  const api: ServiceView = {
    name: "api",
    hosts: [],
    pathPrefixes: ["/api", "/v2"],
    tls: false,
    state: "paused",
    targets: [
      { address: "api:80", state: "healthy", role: "writer", lastCheck: "GET /up returned 200" },
      { address: "canary:80", state: "adding", role: "adding", lastCheck: "GET /up returned 200" },
    ],
  };
  expect(renderTable([api]).split("\n")).toEqual([
    "SERVICE  HOST  PATH      TARGET     STATE             TLS",
    "api      *     /api,/v2  api:80     healthy (paused)  no",
    "api      *     /api,/v2  canary:80  adding (paused)   no",
  ]);
});

test("rollout targets are marked and each split is summed up below the table", () => {
  const rolled: ServiceView = {
    ...web,
    name: "shop",
    hosts: ["shop.test"],
    state: "stopped",
    targets: [
      { address: "shop-1:80", state: "healthy", role: "writer", lastCheck: "GET /up returned 200" },
      { address: "shop-2:80", state: "healthy", role: "rollout", lastCheck: "GET /up returned 200" },
    ],
    rollout: { percent: 10, list: ["beta", "qa"] },
  };
  const plain: ServiceView = { ...rolled, name: "cart", targets: [{ address: "cart:80", state: "healthy", role: "writer", lastCheck: "GET /up returned 200" }], rollout: { percent: 0, list: [] }, state: "running" };
  expect(renderTable([rolled, plain]).split("\n")).toEqual([
    "SERVICE  HOST       PATH  TARGET     STATE                        TLS",
    "shop     shop.test  /     shop-1:80  healthy (stopped)            yes",
    "shop     shop.test  /     shop-2:80  healthy [rollout] (stopped)  yes",
    "cart     shop.test  /     cart:80    healthy                      yes",
    "rollout shop: 10% of clients + beta, qa",
    "rollout cart: 0% of clients",
  ]);
});

test("a service without targets has no rows; no services, just the header", () => {
  expect(renderTable([{ ...web, targets: [] }])).toBe("SERVICE  HOST  PATH  TARGET  STATE  TLS");
  expect(renderTable([])).toBe("SERVICE  HOST  PATH  TARGET  STATE  TLS");
});
