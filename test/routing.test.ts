// Routing (README "Routing"), end to end: a real parachute process, real backends, real
// CLI commands. Each test uses its own host names so tests do not depend on
// each other; the catch-all service (which affects every unknown host) only
// exists inside the tests that deploy it, and they remove it before finishing.
import * as fs from "node:fs";
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { startBackend, type Backend } from "./support/backend.ts";
import { deployOk, echoVia, listServices, rawPathAndQuery, removeOk, whoAnswers } from "./support/helpers.ts";
import { rawRequest } from "./support/net.ts";
import { Proxy } from "./support/proxy.ts";

// Every CLI command is a new process: generous timeouts keep a loaded 2-core box from failing tests.
setDefaultTimeout(30_000);

let proxy: Proxy;
const backends: Record<string, Backend> = {};
const names = ["exact", "wild", "exactwild", "catchall", "catchall2", "root", "api", "apiv2", "seg", "strip", "keep", "owner", "intruder", "other", "nf"];

function b(name: string): Backend {
  const backend = backends[name];
  if (!backend) throw new Error(`no backend ${name}`);
  return backend;
}

beforeAll(async () => {
  for (const name of names) backends[name] = startBackend(name);
  proxy = await Proxy.start();
});

afterAll(async () => {
  await proxy?.stop();
  if (proxy) fs.rmSync(proxy.stateDir, { recursive: true, force: true });
  await Promise.all(Object.values(backends).map((backend) => backend.stop()));
});

/** Deploys a catch-all service for the duration of `body`, then removes it. */
async function withCatchAll(body: () => Promise<void>, service = "catch-all", backend = "catchall") {
  await deployOk(proxy, service, ["--target", b(backend).address]);
  try {
    await body();
  } finally {
    await removeOk(proxy, service);
  }
}

describe("host matching", () => {
  test("an exact host routes to its service", async () => {
    await deployOk(proxy, "exact", ["--target", b("exact").address, "--host", "app.example.com"]);
    const echo = await echoVia(proxy, "/hello", "app.example.com");
    expect(echo.backend).toBe("exact");
    expect(rawPathAndQuery(echo.url)).toBe("/hello");
  });

  test("the host is matched case-insensitively and without its port", async () => {
    await deployOk(proxy, "exact", ["--target", b("exact").address, "--host", "app.example.com"]);
    expect(await whoAnswers(proxy, "/", "APP.Example.COM")).toBe("exact");
    expect(await whoAnswers(proxy, "/", "app.example.com:8080")).toBe("exact");
    expect(await whoAnswers(proxy, "/", "App.EXAMPLE.com:443")).toBe("exact");
  });

  test("a host deployed in upper case matches requests in any case", async () => {
    await deployOk(proxy, "upper", ["--target", b("exact").address, "--host", "Upper.Example.ORG"]);
    try {
      expect(await whoAnswers(proxy, "/", "upper.example.org")).toBe("exact");
      expect(await whoAnswers(proxy, "/", "UPPER.EXAMPLE.ORG:80")).toBe("exact");
    } finally {
      await removeOk(proxy, "upper");
    }
  });

  test("an unknown host with no catch-all service gets a 404 HTML page", async () => {
    const res = await proxy.fetch("/anything?x=1", { host: "nobody.invalid" });
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type") ?? "").toStartWith("text/html");
    expect(await res.text()).toMatch(/<html/i);
  });

  test("a one-level wildcard matches exactly one extra label", async () => {
    await deployOk(proxy, "wild", ["--target", b("wild").address, "--host", "*.wild.test"]);
    expect(await whoAnswers(proxy, "/", "a.wild.test")).toBe("wild");
    expect(await whoAnswers(proxy, "/", "B-2.Wild.Test:8080")).toBe("wild");
    // Not two levels deep, and not the bare domain.
    expect(await whoAnswers(proxy, "/", "a.b.wild.test")).toBe(404);
    expect(await whoAnswers(proxy, "/", "wild.test")).toBe(404);
    // Not a suffix that merely ends like the domain.
    expect(await whoAnswers(proxy, "/", "a.notwild.test")).toBe(404);
  });

  test("an exact host wins over a wildcard that also matches it", async () => {
    await deployOk(proxy, "wild", ["--target", b("wild").address, "--host", "*.wild.test"]);
    await deployOk(proxy, "exactwild", ["--target", b("exactwild").address, "--host", "special.wild.test"]);
    expect(await whoAnswers(proxy, "/", "special.wild.test")).toBe("exactwild");
    expect(await whoAnswers(proxy, "/", "ordinary.wild.test")).toBe("wild");
  });

  test("a catch-all service (no --host) gets every host that matches nothing else", async () => {
    await deployOk(proxy, "exact", ["--target", b("exact").address, "--host", "app.example.com"]);
    await deployOk(proxy, "wild", ["--target", b("wild").address, "--host", "*.wild.test"]);
    await withCatchAll(async () => {
      expect(await whoAnswers(proxy, "/", "unknown.invalid")).toBe("catchall");
      expect(await whoAnswers(proxy, "/", "127.0.0.1")).toBe("catchall");
      // What a wildcard does not match falls to the catch-all ...
      expect(await whoAnswers(proxy, "/", "a.b.wild.test")).toBe("catchall");
      expect(await whoAnswers(proxy, "/", "wild.test")).toBe("catchall");
      // ... while exact and wildcard hosts keep their services.
      expect(await whoAnswers(proxy, "/", "app.example.com")).toBe("exact");
      expect(await whoAnswers(proxy, "/", "x.wild.test")).toBe("wild");
    });
    // Gone again after remove.
    expect(await whoAnswers(proxy, "/", "unknown.invalid")).toBe(404);
  });

  test("a request without a usable Host header goes to the catch-all with its whole path", async () => {
    await withCatchAll(async () => {
      for (const hostLine of [[], [["Host", ""]]] as [string, string][][]) {
        const request = `GET /api/v1/users?id=7 HTTP/1.0\r\n${hostLine.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`;
        const res = await rawRequest(proxy.httpPort, request);
        expect(res.status).toBe(200);
        const echo = JSON.parse(res.body);
        expect(echo.backend).toBe("catchall");
        expect(rawPathAndQuery(echo.url)).toBe("/api/v1/users?id=7");
      }
    });
  });

  test("a malformed Host header is a 400 from the proxy (even with a catch-all), and CONNECT a 405", async () => {
    await withCatchAll(async () => {
      for (const host of ["bad host", "a/b", "[::1", "%zz", "a@b"]) {
        const res = await rawRequest(proxy.httpPort, `GET /x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
        expect(res.status, `Host: ${host}`).toBe(400);
        expect(res.body).toContain("400 Bad Request");
      }
      const connect = await rawRequest(proxy.httpPort, "CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\nConnection: close\r\n\r\n");
      expect(connect.status).toBe(405);
      // Well-formed hosts still route.
      expect(await whoAnswers(proxy, "/", "ok-host_1.example:8080")).toBe("catchall");
    });
  });

  test("no fall-through: an exact host whose services do not match the path is a 404, even with a catch-all", async () => {
    await deployOk(proxy, "nf", ["--target", b("nf").address, "--host", "nf.test", "--path-prefix", "/only"]);
    await withCatchAll(async () => {
      expect(await whoAnswers(proxy, "/only/x", "nf.test")).toBe("nf");
      const res = await proxy.fetch("/elsewhere", { host: "nf.test" });
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type") ?? "").toStartWith("text/html");
      await res.body?.cancel();
      // The catch-all still serves hosts nobody claimed.
      expect(await whoAnswers(proxy, "/elsewhere", "unclaimed.test")).toBe("catchall");
    });
  });

  test("no fall-through: an exact host whose services do not match the path is a 404, even when a wildcard matches the host", async () => {
    await deployOk(proxy, "wild", ["--target", b("wild").address, "--host", "*.wild.test"]);
    await deployOk(proxy, "nfexact", ["--target", b("nf").address, "--host", "pinned.wild.test", "--path-prefix", "/only"]);
    try {
      expect(await whoAnswers(proxy, "/only", "pinned.wild.test")).toBe("nf");
      expect(await whoAnswers(proxy, "/elsewhere", "pinned.wild.test")).toBe(404);
      expect(await whoAnswers(proxy, "/elsewhere", "loose.wild.test")).toBe("wild");
    } finally {
      await removeOk(proxy, "nfexact");
    }
  });

  test("no fall-through: a wildcard host whose services do not match the path is a 404, even with a catch-all", async () => {
    await deployOk(proxy, "nfwild", ["--target", b("nf").address, "--host", "*.nfw.test", "--path-prefix", "/only"]);
    try {
      await withCatchAll(async () => {
        expect(await whoAnswers(proxy, "/only", "x.nfw.test")).toBe("nf");
        expect(await whoAnswers(proxy, "/elsewhere", "x.nfw.test")).toBe(404);
      });
    } finally {
      await removeOk(proxy, "nfwild");
    }
  });
});

describe("path prefixes", () => {
  test("the longest matching path prefix wins", async () => {
    await deployOk(proxy, "root", ["--target", b("root").address, "--host", "lp.test"]);
    await deployOk(proxy, "api", ["--target", b("api").address, "--host", "lp.test", "--path-prefix", "/api"]);
    await deployOk(proxy, "apiv2", ["--target", b("apiv2").address, "--host", "lp.test", "--path-prefix", "/api/v2"]);
    expect(await whoAnswers(proxy, "/api/v2/users", "lp.test")).toBe("apiv2");
    expect(await whoAnswers(proxy, "/api/v2", "lp.test")).toBe("apiv2");
    expect(await whoAnswers(proxy, "/api/v1/users", "lp.test")).toBe("api");
    expect(await whoAnswers(proxy, "/api", "lp.test")).toBe("api");
    expect(await whoAnswers(proxy, "/api/v22", "lp.test")).toBe("api");
    expect(await whoAnswers(proxy, "/", "lp.test")).toBe("root");
    expect(await whoAnswers(proxy, "/apiary", "lp.test")).toBe("root");
  });

  test("prefixes match whole path segments only", async () => {
    await deployOk(proxy, "seg", ["--target", b("seg").address, "--host", "seg.test", "--path-prefix", "/api"]);
    expect(await whoAnswers(proxy, "/api", "seg.test")).toBe("seg");
    expect(await whoAnswers(proxy, "/api/", "seg.test")).toBe("seg");
    expect(await whoAnswers(proxy, "/api/x", "seg.test")).toBe("seg");
    expect(await whoAnswers(proxy, "/api?q=1", "seg.test")).toBe("seg");
    expect(await whoAnswers(proxy, "/apiary", "seg.test")).toBe(404);
    expect(await whoAnswers(proxy, "/ap", "seg.test")).toBe(404);
    expect(await whoAnswers(proxy, "/", "seg.test")).toBe(404);
  });

  test("strip-path-prefix is on by default: /api/x?q=1 is forwarded as /x?q=1 and /api as /", async () => {
    await deployOk(proxy, "strip", ["--target", b("strip").address, "--host", "strip.test", "--path-prefix", "/api"]);
    expect(rawPathAndQuery((await echoVia(proxy, "/api/x?q=1", "strip.test")).url)).toBe("/x?q=1");
    expect(rawPathAndQuery((await echoVia(proxy, "/api", "strip.test")).url)).toBe("/");
    expect(rawPathAndQuery((await echoVia(proxy, "/api?q=1", "strip.test")).url)).toBe("/?q=1");
    expect(rawPathAndQuery((await echoVia(proxy, "/api/a/b/c", "strip.test")).url)).toBe("/a/b/c");
  });

  test("with --strip-path-prefix=false the path is forwarded unchanged", async () => {
    await deployOk(proxy, "keep", [
      "--target",
      b("keep").address,
      "--host",
      "keep.test",
      "--path-prefix",
      "/api",
      "--strip-path-prefix=false",
    ]);
    expect(rawPathAndQuery((await echoVia(proxy, "/api/x?q=1", "keep.test")).url)).toBe("/api/x?q=1");
    expect(rawPathAndQuery((await echoVia(proxy, "/api", "keep.test")).url)).toBe("/api");
  });

  test("one service may serve several prefixes of a host", async () => {
    await deployOk(proxy, "multi", ["--target", b("other").address, "--host", "multi.test", "--path-prefix", "/a,/b"]);
    try {
      expect(await whoAnswers(proxy, "/a/1", "multi.test")).toBe("other");
      expect(await whoAnswers(proxy, "/b/1", "multi.test")).toBe("other");
      expect(await whoAnswers(proxy, "/c/1", "multi.test")).toBe(404);
    } finally {
      await removeOk(proxy, "multi");
    }
  });
});

describe("ownership of (host, path prefix)", () => {
  test("deploying another service onto a taken host fails and changes nothing", async () => {
    await deployOk(proxy, "owner", ["--target", b("owner").address, "--host", "taken.test"]);
    const before = await listServices(proxy);

    const result = await proxy.cli(["deploy", "intruder", "--target", b("intruder").address, "--host", "taken.test"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Error: host is used by another service");

    expect(await whoAnswers(proxy, "/", "taken.test")).toBe("owner");
    const after = await listServices(proxy);
    expect(after.map((s) => s.name)).not.toContain("intruder");
    expect(after).toEqual(before);
    expect(b("intruder").requests).toBe(0);
    await removeOk(proxy, "owner");
  });

  test("an existing service cannot move onto a taken host; its own hosts keep working", async () => {
    await deployOk(proxy, "owner", ["--target", b("owner").address, "--host", "taken2.test"]);
    await deployOk(proxy, "mover", ["--target", b("other").address, "--host", "mover.test"]);
    try {
      const result = await proxy.cli(["deploy", "mover", "--target", b("intruder").address, "--host", "mover.test,taken2.test"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("Error: host is used by another service");
      // Neither the target nor the hosts of "mover" changed.
      expect(await whoAnswers(proxy, "/", "mover.test")).toBe("other");
      expect(await whoAnswers(proxy, "/", "taken2.test")).toBe("owner");
    } finally {
      await removeOk(proxy, "mover");
      await removeOk(proxy, "owner");
    }
  });

  test("a taken host matched case-insensitively still conflicts", async () => {
    await deployOk(proxy, "owner", ["--target", b("owner").address, "--host", "case.test"]);
    try {
      const result = await proxy.cli(["deploy", "intruder", "--target", b("intruder").address, "--host", "CASE.Test"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("Error: host is used by another service");
      expect(await whoAnswers(proxy, "/", "case.test")).toBe("owner");
    } finally {
      await removeOk(proxy, "owner");
    }
  });

  test("the same host with a different path prefix is not a conflict", async () => {
    await deployOk(proxy, "owner", ["--target", b("owner").address, "--host", "shared.test"]);
    try {
      await deployOk(proxy, "intruder", ["--target", b("intruder").address, "--host", "shared.test", "--path-prefix", "/sub"]);
      expect(await whoAnswers(proxy, "/sub/x", "shared.test")).toBe("intruder");
      expect(await whoAnswers(proxy, "/x", "shared.test")).toBe("owner");
      // But the same prefix on the same host is.
      const result = await proxy.cli(["deploy", "third", "--target", b("other").address, "--host", "shared.test", "--path-prefix", "/sub"]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("Error: host is used by another service");
      expect(await whoAnswers(proxy, "/sub/x", "shared.test")).toBe("intruder");
    } finally {
      await removeOk(proxy, "intruder");
      await removeOk(proxy, "owner");
    }
  });

  test("two catch-all services on the same prefix conflict", async () => {
    await withCatchAll(async () => {
      const result = await proxy.cli(["deploy", "catch-all-2", "--target", b("catchall2").address]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("Error: host is used by another service");
      expect(await whoAnswers(proxy, "/", "unclaimed.test")).toBe("catchall");
      expect((await listServices(proxy)).map((s) => s.name)).not.toContain("catch-all-2");
    });
  });

  test("remove frees the host so another service can take it", async () => {
    await deployOk(proxy, "owner", ["--target", b("owner").address, "--host", "free.test"]);
    const refused = await proxy.cli(["deploy", "taker", "--target", b("intruder").address, "--host", "free.test"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("Error: host is used by another service");

    await removeOk(proxy, "owner");
    expect(await whoAnswers(proxy, "/", "free.test")).toBe(404);

    await deployOk(proxy, "taker", ["--target", b("intruder").address, "--host", "free.test"]);
    try {
      expect(await whoAnswers(proxy, "/", "free.test")).toBe("intruder");
    } finally {
      await removeOk(proxy, "taker");
    }
  });

  test("remove frees the catch-all slot too", async () => {
    await withCatchAll(async () => {
      expect(await whoAnswers(proxy, "/", "unclaimed.test")).toBe("catchall");
    });
    await withCatchAll(
      async () => {
        expect(await whoAnswers(proxy, "/", "unclaimed.test")).toBe("catchall2");
      },
      "catch-all-2",
      "catchall2",
    );
  });

  test("removing an unknown service fails with `service not found`", async () => {
    const result = await proxy.cli(["remove", "no-such-service"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Error: service not found");
  });
});
