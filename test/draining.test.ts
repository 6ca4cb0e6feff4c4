// Draining (steps 4-5 of the deploy sequence, README "How it works"; "Traffic control"): old targets get no new requests, their
// in-flight requests may finish within --drain-timeout (then 504), and
// deploy/remove return only once draining is over.
import { beforeAll, expect, test } from "bun:test";
import { type Backend } from "./support/backend.ts";
import { useProxy } from "./support/fixture.ts";
import { Proxy, waitFor, type CliResult, SLOW_TEST } from "./support/proxy.ts";

const fixture = useProxy();
const backend = fixture.backend;
let proxy: Proxy;
beforeAll(() => {
  proxy = fixture.proxy;
});

const fast = ["--health-check-interval", "100ms"];

async function deployOk(service: string, host: string, target: Backend, extra: string[] = []) {
  const result = await proxy.cli(["deploy", service, "--host", host, "--target", target.address, ...fast, ...extra]);
  expect(result.stderr).not.toContain("Error");
  expect(result.code).toBe(0);
  return result;
}

interface Timed {
  status: number;
  backend: string | null;
  body: string;
  at: number;
}

function slowRequest(host: string, ms: number): Promise<Timed> {
  return proxy.fetch(`/slow?ms=${ms}`, { host }).then(async (res) => ({
    status: res.status,
    backend: res.headers.get("x-backend"),
    body: await res.text(),
    at: performance.now(),
  }));
}

function timedCli(args: string[]): Promise<CliResult & { at: number }> {
  return proxy.cli(args).then((r) => ({ ...r, at: performance.now() }));
}

test("deploy returns only after the old target's in-flight requests have finished", async () => {
  const host = "drain-wait.test";
  const oldTarget = backend("drain-old");
  const newTarget = backend("drain-new");
  await deployOk("drainwait", host, oldTarget);

  const slowStarted = performance.now();
  const slow = [slowRequest(host, 1500), slowRequest(host, 1500), slowRequest(host, 1200)];
  const settled: boolean[] = slow.map(() => false);
  slow.forEach((p, i) => void p.then(() => (settled[i] = true)));
  await waitFor("slow requests at the old target", () => oldTarget.inflight === 3, { timeoutMs: 5000 });

  const deploy = await timedCli(["deploy", "drainwait", "--host", host, "--target", newTarget.address, ...fast]);
  expect(deploy.code).toBe(0);
  // At the moment deploy exited, the old target had nothing in flight any more...
  expect(oldTarget.inflight).toBe(0);
  // ...and deploy had waited for the slow requests (they needed at least ~1.2 s from their start).
  expect(deploy.at - slowStarted).toBeGreaterThanOrEqual(1150);
  expect(deploy.stderr).toContain(oldTarget.address);

  const results = await Promise.all(slow);
  for (const r of results) {
    expect(r.status).toBe(200);
    expect(r.backend).toBe("drain-old");
    // The client had its answer no later than (about) when deploy exited.
    expect(r.at).toBeLessThanOrEqual(deploy.at + 250);
  }
  expect(settled).toEqual([true, true, true]);
}, 15_000);

test("a request still running at --drain-timeout is cancelled with 504, and deploy does not wait longer", async () => {
  const host = "drain-timeout.test";
  const oldTarget = backend("dt-old");
  const newTarget = backend("dt-new");
  await deployOk("draintimeout", host, oldTarget);

  const started = performance.now();
  const slow = slowRequest(host, 5000);
  await waitFor("slow request at the old target", () => oldTarget.inflight === 1, { timeoutMs: 5000 });

  const deploy = await timedCli(["deploy", "draintimeout", "--host", host, "--target", newTarget.address, "--drain-timeout", "500ms", ...fast]);
  expect(deploy.code).toBe(0);
  // deploy waited for the drain deadline ...
  expect(deploy.at - started).toBeGreaterThanOrEqual(450);
  // ... and not for the target, which is still working on its 5 s answer.
  expect(oldTarget.inflight).toBe(1);
  const result = await slow;
  expect(result.status).toBe(504);
  // The client was answered before the target would have answered.
  expect(oldTarget.inflight).toBe(1);

  const after = await proxy.fetch("/echo", { host });
  expect(after.status).toBe(200);
  expect(after.headers.get("x-backend")).toBe("dt-new");
}, 15_000);

test("remove drains in-flight requests, stops routing at once, and frees the host", async () => {
  const host = "remove-drain.test";
  const first = backend("rm-first");
  const second = backend("rm-second");
  await deployOk("rmdrain", host, first);

  const slowStarted = performance.now();
  const slow = [slowRequest(host, 1500), slowRequest(host, 1500)];
  await waitFor("slow requests at the target", () => first.inflight === 2, { timeoutMs: 5000 });

  const removing = timedCli(["remove", "rmdrain"]);
  // While remove waits for the drain, the service is no longer routed: new requests get 404.
  await waitFor(
    "the service to stop being routed",
    async () => {
      const res = await proxy.fetch("/echo", { host });
      await res.text();
      return res.status === 404;
    },
    { timeoutMs: 5000 },
  );
  expect(first.inflight).toBe(2);

  const removed = await removing;
  expect(removed.code).toBe(0);
  expect(first.inflight).toBe(0);
  expect(removed.at - slowStarted).toBeGreaterThanOrEqual(1400);
  for (const r of await Promise.all(slow)) {
    expect(r.status).toBe(200);
    expect(r.backend).toBe("rm-first");
  }

  expect((await proxy.listJson()).find((s) => s.name === "rmdrain")).toBeUndefined();
  // The host is free: another service can take it.
  await deployOk("rmnext", host, second);
  const res = await proxy.fetch("/echo", { host });
  expect(res.status).toBe(200);
  expect(res.headers.get("x-backend")).toBe("rm-second");
}, 15_000);

test("a long download in flight is drained too: deploy waits until its body is complete", async () => {
  const host = "drain-stream.test";
  const oldTarget = backend("ds-old");
  const newTarget = backend("ds-new");
  await deployOk("drainstream", host, oldTarget);

  const started = performance.now();
  const download = proxy.fetch("/stream?chunks=8&interval=200", { host }).then(async (res) => ({
    status: res.status,
    backend: res.headers.get("x-backend"),
    body: await res.text(),
    at: performance.now(),
  }));
  await waitFor("the download to start", () => oldTarget.seen.some((s) => new URL(s.url).pathname === "/stream"), { timeoutMs: 5000 });
  const deploy = await timedCli(["deploy", "drainstream", "--host", host, "--target", newTarget.address, ...fast]);
  expect(deploy.code).toBe(0);
  // The stream needs ~1.4 s; deploy waited for it.
  expect(deploy.at - started).toBeGreaterThanOrEqual(1300);
  const result = await download;
  expect(result.status).toBe(200);
  expect(result.backend).toBe("ds-old");
  expect(result.body.trim().split("\n").length).toBe(8);
  expect(result.at).toBeLessThanOrEqual(deploy.at + 250);
}, SLOW_TEST);

test("remove --drain-timeout cancels what is still running with 504", async () => {
  const host = "remove-timeout.test";
  const app = backend("rt");
  await deployOk("rmtimeout", host, app);
  const slow = slowRequest(host, 5000);
  await waitFor("slow request at the target", () => app.inflight === 1, { timeoutMs: 5000 });
  const removed = await timedCli(["remove", "rmtimeout", "--drain-timeout", "300ms"]);
  expect(removed.code).toBe(0);
  // remove did not wait for the target, which is still working on its 5 s answer ...
  expect(app.inflight).toBe(1);
  const result = await slow;
  expect(result.status).toBe(504);
  // ... nor did the client.
  expect(app.inflight).toBe(1);
}, SLOW_TEST);

test("list shows the old target as draining while deploy waits for it", async () => {
  const host = "list-drain.test";
  const oldTarget = backend("ld-old");
  const newTarget = backend("ld-new");
  await deployOk("listdrain", host, oldTarget);

  const slow = slowRequest(host, 2500);
  await waitFor("slow request at the old target", () => oldTarget.inflight === 1, { timeoutMs: 5000 });
  let deployDone = false;
  const deploying = proxy.cli(["deploy", "listdrain", "--host", host, "--target", newTarget.address, ...fast]).then((r) => {
    deployDone = true;
    return r;
  });

  const during = await waitFor(
    "list --json to show a draining target",
    async () => {
      const service = (await proxy.listJson()).find((s) => s.name === "listdrain");
      return service?.targets.some((t) => t.address === oldTarget.address && t.state === "draining") ? service : undefined;
    },
    { timeoutMs: 5000, intervalMs: 50 },
  );
  expect(deployDone).toBe(false);
  expect(during.targets).toContainEqual(expect.objectContaining({ address: oldTarget.address, state: "draining" }));
  expect(during.targets).toContainEqual(expect.objectContaining({ address: newTarget.address, state: "healthy" }));

  // The table shows it too.
  const table = await proxy.cli(["list"]);
  expect(table.code).toBe(0);
  const row = table.stdout.split("\n").find((line) => line.includes(oldTarget.address));
  expect(row?.split(/\s+/)).toContain("draining");

  const deployed = await deploying;
  expect(deployed.code).toBe(0);
  expect((await slow).status).toBe(200);
  const after = (await proxy.listJson()).find((s) => s.name === "listdrain");
  expect(after?.targets).toEqual([expect.objectContaining({ address: newTarget.address, state: "healthy" })]);
}, 15_000);
