import { expect, test } from "bun:test";
import { normalizeHost, prefixMatches, Router, validHostHeader, type Routable } from "./router.ts";

const svc = (name: string, hosts: string[] = [], pathPrefixes: string[] = ["/"]): Routable => ({ name, hosts, pathPrefixes });
const served = (router: Router<Routable>, host: string, path: string) => router.match(host, path)?.service.name;

test("an exact host selects its service; another host matches nothing", () => {
  const router = new Router([svc("web", ["app.example.com"]), svc("blog", ["blog.example.com"])]);
  expect(served(router, "app.example.com", "/")).toBe("web");
  expect(served(router, "blog.example.com", "/x")).toBe("blog");
  expect(router.match("other.example.com", "/")).toBeUndefined();
  expect(router.match("", "/")).toBeUndefined();
});

test("a wildcard matches exactly one label below its domain", () => {
  const router = new Router([svc("tenants", ["*.example.com"])]);
  expect(served(router, "a.example.com", "/")).toBe("tenants");
  expect(served(router, "xyz-1.example.com", "/deep/path")).toBe("tenants");
  expect(router.match("a.b.example.com", "/")).toBeUndefined();
  expect(router.match("example.com", "/")).toBeUndefined();
  expect(router.match("aexample.com", "/")).toBeUndefined();
});

test("the exact host wins over the wildcard, the wildcard over the catch-all", () => {
  const router = new Router([svc("any"), svc("wild", ["*.example.com"]), svc("exact", ["app.example.com"])]);
  expect(served(router, "app.example.com", "/")).toBe("exact");
  expect(served(router, "b.example.com", "/")).toBe("wild");
  expect(served(router, "elsewhere.test", "/")).toBe("any");
  expect(served(router, "localhost", "/x")).toBe("any");
  expect(served(router, "", "/")).toBe("any");
});

test("no fall-through: an exact host without a matching prefix is a miss even with a wildcard and a catch-all", () => {
  const router = new Router([svc("any"), svc("wild", ["*.example.com"]), svc("api", ["app.example.com"], ["/api"])]);
  expect(served(router, "app.example.com", "/api/v1")).toBe("api");
  expect(router.match("app.example.com", "/")).toBeUndefined();
  expect(router.match("app.example.com", "/other")).toBeUndefined();
  const wildOnly = new Router([svc("any"), svc("wild", ["*.example.com"], ["/w"])]);
  expect(wildOnly.match("a.example.com", "/")).toBeUndefined();
  expect(served(wildOnly, "a.example.com", "/w")).toBe("wild");
});

test("within a host the longest path prefix wins, whatever the order services were given", () => {
  const services = [svc("root", ["h.test"], ["/"]), svc("api", ["h.test"], ["/api"]), svc("v2", ["h.test"], ["/api/v2"])];
  for (const order of [services, [...services].reverse()]) {
    const router = new Router(order);
    expect(served(router, "h.test", "/")).toBe("root");
    expect(served(router, "h.test", "/api")).toBe("api");
    expect(served(router, "h.test", "/api/v1/users")).toBe("api");
    expect(served(router, "h.test", "/api/v2")).toBe("v2");
    expect(served(router, "h.test", "/api/v2/x")).toBe("v2");
    expect(served(router, "h.test", "/api/v20")).toBe("api");
  }
});

test("the route carries the prefix that matched", () => {
  const router = new Router([svc("multi", ["h.test"], ["/a", "/b/c"])]);
  expect(router.match("h.test", "/b/c/d")).toEqual({ prefix: "/b/c", service: svc("multi", ["h.test"], ["/a", "/b/c"]) });
  expect(router.match("h.test", "/a")?.prefix).toBe("/a");
  expect(router.match("h.test", "/b")).toBeUndefined();
});

test("prefixes match whole segments: /api covers /api and /api/x, not /apix or /apiary", () => {
  const router = new Router([svc("api", [], ["/api"])]);
  expect(served(router, "h", "/api")).toBe("api");
  expect(served(router, "h", "/api/")).toBe("api");
  expect(served(router, "h", "/api/x")).toBe("api");
  expect(router.match("h", "/apix")).toBeUndefined();
  expect(router.match("h", "/apiary")).toBeUndefined();
  expect(router.match("h", "/ap")).toBeUndefined();
  expect(router.match("h", "/")).toBeUndefined();
});

test("prefixMatches: `/` covers every path; others only on a segment boundary", () => {
  expect(prefixMatches("/", "/")).toBe(true);
  expect(prefixMatches("/", "/anything/at/all")).toBe(true);
  expect(prefixMatches("/a/b", "/a/b")).toBe(true);
  expect(prefixMatches("/a/b", "/a/b/c")).toBe(true);
  expect(prefixMatches("/a/b", "/a/bc")).toBe(false);
  expect(prefixMatches("/a/b", "/a")).toBe(false);
  expect(prefixMatches("/api", "/API")).toBe(false);
});

test("match compares the host as given: the caller normalises it first (normalizeHost)", () => {
  const router = new Router([svc("web", ["app.example.com"])]);
  expect(router.match("APP.example.com", "/")).toBeUndefined();
  expect(router.match("app.example.com:8080", "/")).toBeUndefined();
  expect(served(router, normalizeHost("APP.Example.COM:8080"), "/")).toBe("web");
  expect(served(router, normalizeHost("app.example.com."), "/")).toBe("web");
});

test("normalizeHost: lower case, port and trailing dot removed, IPv6 brackets kept", () => {
  expect(normalizeHost(null)).toBe("");
  expect(normalizeHost("")).toBe("");
  expect(normalizeHost("Example.COM")).toBe("example.com");
  expect(normalizeHost("example.com:443")).toBe("example.com");
  expect(normalizeHost("example.com.:80")).toBe("example.com");
  expect(normalizeHost("127.0.0.1:3000")).toBe("127.0.0.1");
  expect(normalizeHost("[::1]:8080")).toBe("[::1]");
  expect(normalizeHost("[2001:DB8::1]")).toBe("[2001:db8::1]");
  expect(normalizeHost("[::1")).toBe("[::1"); // unterminated: left as it is
});

test("validHostHeader accepts uri-host[:port] and refuses the rest", () => {
  for (const ok of ["", "example.com", "example.com:8080", "a_b.test", "[::1]", "[::1]:80", "xn--bcher-kva.example", "%41.test", "host:"]) {
    expect(validHostHeader(ok)).toBe(true);
  }
  for (const bad of ["exa mple.com", "a/b", "a@b", "host:123456", "host:port", "[::1", "%4.test", "a\r\nb"]) {
    expect(validHostHeader(bad)).toBe(false);
  }
});

test("servesHost: exact, one-level wildcard, or any host once a catch-all exists", () => {
  const router = new Router([svc("wild", ["*.example.com"], ["/only"]), svc("exact", ["app.test"])]);
  expect(router.servesHost("app.test")).toBe(true);
  expect(router.servesHost("a.example.com")).toBe(true);
  expect(router.servesHost("a.b.example.com")).toBe(false);
  expect(router.servesHost("example.com")).toBe(false);
  expect(router.servesHost("nohost")).toBe(false);
  expect(new Router([svc("any")]).servesHost("whatever.test")).toBe(true);
  expect(new Router([]).servesHost("")).toBe(false);
});

test("conflict names the other service owning a (host, prefix) pair", () => {
  const web = svc("web", ["app.test", "*.example.com"], ["/", "/api"]);
  const any = svc("any", [], ["/"]);
  const router = new Router([web, any]);
  expect(router.conflict(svc("other", ["app.test"], ["/api"]))).toBe(web);
  expect(router.conflict(svc("other", ["*.example.com"], ["/"]))).toBe(web);
  expect(router.conflict(svc("other", ["new.test", "app.test"], ["/x", "/"]))).toBe(web);
  expect(router.conflict(svc("other", [], ["/"]))).toBe(any);
});

test("no conflict for the service itself, another prefix, another host, or a deeper wildcard", () => {
  const router = new Router([svc("web", ["app.test", "*.example.com"], ["/api"]), svc("any", [], ["/"])]);
  expect(router.conflict(svc("web", ["app.test"], ["/api"]))).toBeUndefined(); // redeploying itself
  expect(router.conflict(svc("other", ["app.test"], ["/api/v2", "/"]))).toBeUndefined();
  expect(router.conflict(svc("other", ["a.example.com"], ["/api"]))).toBeUndefined(); // exact host beside a wildcard
  expect(router.conflict(svc("other", ["*.b.example.com"], ["/api"]))).toBeUndefined();
  expect(router.conflict(svc("other", [], ["/api"]))).toBeUndefined();
  expect(new Router([]).conflict(svc("x"))).toBeUndefined();
});

test("servicesFor: the services of the level match searches, each once", () => {
  const router = new Router([svc("web", ["app.test"], ["/", "/api"]), svc("api", ["app.test"], ["/v2"]), svc("shops", ["*.shops.test"]), svc("rest")]);
  expect(router.servicesFor("app.test").map((s) => s.name)).toEqual(["web", "api"]);
  expect(router.servicesFor("a.shops.test").map((s) => s.name)).toEqual(["shops"]);
  expect(router.servicesFor("other.test").map((s) => s.name)).toEqual(["rest"]);
  expect(new Router([svc("web", ["app.test"])]).servicesFor("other.test")).toEqual([]);
});
