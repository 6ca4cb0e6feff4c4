// Automatic rollback on errors (README "History and rollback"), end to end:
// `deploy --verify-window` under real load through a real parachute. A new
// target that fails too often is switched away from within the window, and
// every request a client saw fail is one the bad target itself failed; a
// healthy one passes the window, during which the old target gets no new
// request yet is kept, and drains after. With workers, the counts come from
// every worker. Bad limits are refused with nothing changed.
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import { deadPort } from "./support/backend.ts";
import { usePerTestProcesses } from "./support/fixture.ts";
import type { Proxy } from "./support/proxy.ts";
import { adminServices, eventually, mustRun, snapshot, spawnCli, startLoad, type Sample } from "./support/traffic.ts";

const SLOW = 60_000;
const HOST = "app.test";
const FAST = ["--health-check-interval", "50ms"];

const processes = usePerTestProcesses();
const { backend } = processes;
const startProxy = (workers = 1) => processes.startProxy({ args: ["--workers", String(workers)] });

interface HistoryRecord {
  command: string;
  options: Record<string, unknown>;
  before: { targets: string[] };
  after: { targets: string[] };
  outcome: "ok" | "failed";
  error?: string;
}

async function lastRecord(proxy: Proxy): Promise<HistoryRecord> {
  const result = await mustRun(proxy, ["history", "app", "--json"]);
  return (JSON.parse(result.stdout) as { records: HistoryRecord[] }).records.at(-1)!;
}

/** Client answers that are neither a 200 from a backend nor one of `bad`'s own 500s: each is a defect. */
function defects(samples: Sample[], bad: string): string[] {
  return samples
    .filter((s) => !(s.status === 200 && s.backend !== "") && !(s.status === 500 && s.backend === bad))
    .map((s) => `${s.status} from "${s.backend}"${s.error ? `: ${s.error}` : ""}`);
}

/** Which backend answers the app now. */
async function answering(proxy: Proxy): Promise<string | number> {
  const res = await proxy.fetch("/echo", { host: HOST });
  await res.arrayBuffer();
  return res.status === 200 ? (res.headers.get("x-backend") ?? "") : res.status;
}

/** Targets as list shows their place in the service, without their last check. */
const roles = (targets: { address: string; state: string; role: string }[]) => targets.map(({ address, state, role }) => ({ address, state, role }));

for (const workers of [1, 2]) {
  test(`${workers === 1 ? "in one process" : "with --workers 2"}: a new target answering 500 to 20% of requests is rolled back within the window under load, and no other request fails`, async () => {
    const proxy = await startProxy(workers);
    const [a, b] = [backend("a"), backend("b")];
    await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
    const load = startLoad(proxy, HOST, { loops: 4, maxPerLoop: 4000 });
    await load.reached(40);

    const started = performance.now();
    const deploy = spawnCli(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, "--verify-window", "20s", "--verify-max-errors", "5%", "--drain-timeout", "5s", ...FAST]);
    await deploy.waitForLine((l) => l === `Verifying ${b.address} for 20s: back to ${a.address} if over 5% of at least 20 requests fail`);
    // A request in flight on b when it is switched away from finishes there; then b starts failing.
    const slow = proxy.fetch("/slow?ms=1500", { host: HOST });
    await eventually("the slow request to reach b", () => b.seen.some((r) => r.url.includes("/slow")));
    b.setFailureRate(0.2);
    const result = await deploy.done;
    const slowAnswer = await slow;
    expect([slowAnswer.status, await slowAnswer.text()]).toEqual([200, "slow from b"]);
    const took = performance.now() - started;
    const bAfterDeploy = b.requests;
    // Traffic goes on after the switch back, all of it to a.
    const mark = load.samples.length;
    await load.reached(mark + 100);
    const samples = await load.stop();

    expect(result.code, result.stderr).toBe(1);
    expect(took).toBeLessThan(20_000);
    const error = result.stderr.trim().split("\n").at(-1)!;
    expect(error).toMatch(new RegExp(`^Error: error rate (\\d+(\\.\\d+)?)% of (\\d+) requests to ${b.address} is over 5%; traffic is back on ${a.address} \\(first failures: 500 /echo(, 500 /echo)*\\)$`));
    const [, rate, , requests] = /error rate (\d+(\.\d+)?)% of (\d+) requests/.exec(error)!;
    expect(Number(rate)).toBeGreaterThan(5);
    expect(Number(requests)).toBeGreaterThanOrEqual(20);
    expect(result.stderr).toMatch(new RegExp(`Error rate \\S+% over 5% \\(\\d+ of \\d+ requests failed\\): switched back to ${a.address}`));
    expect(result.stderr).toContain(`Draining ${b.address} (up to 5s)`);

    // Zero requests failed because of the verification: every failure a client saw is one of b's own 500s, and each of those reached a client.
    expect(defects(samples, "b")).toEqual([]);
    const served500 = samples.filter((s) => s.status === 500).length;
    expect(served500).toBeGreaterThan(0);
    expect(served500).toBe(b.failed);
    expect(samples.slice(mark).every((s) => s.backend === "a")).toBe(true);
    // b drained before the deploy returned, and got nothing after.
    expect(b.requests).toBe(bAfterDeploy);
    expect(b.inflight).toBe(0);
    const listed = (await adminServices(proxy))[0]!;
    expect(roles(listed.targets)).toEqual([{ address: a.address, state: "healthy", role: "writer" }]);
    expect(fs.readFileSync(proxy.stateFile, "utf8")).not.toContain(b.address);

    // The history: a failed deploy, from a back to a, whose error is what the client was told.
    const record = await lastRecord(proxy);
    expect(record).toMatchObject({ command: "deploy", outcome: "failed", before: { targets: [a.address] }, after: { targets: [a.address] } });
    expect(`Error: ${record.error}`).toBe(error);
    expect(record.options).toMatchObject({ verifyWindow: "20s", verifyMaxErrors: "5%" });
    const rolledBack = await proxy.waitForLog((l) => l.msg === "Deploy rolled back: error rate over the limit");
    expect(rolledBack).toMatchObject({ service: "app", targets: [b.address], back_to: [a.address] });
    // And a rollback point is still the deploy of a: the failed one is not a deploy to return to.
    expect((await proxy.cli(["rollback", "app"])).stderr.trim()).toBe("Error: service app has no previous deploy to roll back to");
  }, SLOW);
}

for (const workers of [1, 2]) {
  test(`${workers === 1 ? "in one process" : "with --workers 2"}: a healthy new target passes the window: the old one gets no new request but is kept, then drains; progress counts down`, async () => {
    const proxy = await startProxy(workers);
    const [a, b] = [backend("a"), backend("b")];
    await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
    const load = startLoad(proxy, HOST, { loops: 2, maxPerLoop: 4000, gapMs: 2 });
    await load.reached(20);

    const started = performance.now();
    const deploy = spawnCli(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, "--verify-window", "3s", "--verify-min-requests", "10", ...FAST]);
    const countdown = new RegExp(`^Verifying ${b.address}: (\\d)s left, (\\d+) requests, 0 errors \\(0%\\)$`);
    await deploy.waitForLine((l) => countdown.test(l));
    // During the window: a is out of rotation but still there (listed as draining, nothing drained yet).
    const aRequests = a.requests;
    const aChecks = a.healthChecks;
    const during = (await adminServices(proxy))[0]!;
    expect(roles(during.targets)).toContainEqual({ address: a.address, state: "draining", role: "draining" });
    expect(proxy.logs.some((l) => l.msg === "Drained")).toBe(false);
    const result = await deploy.done;
    const took = performance.now() - started;
    const samples = await load.stop();

    expect(result.code, result.stderr).toBe(0);
    expect(took).toBeGreaterThanOrEqual(3_000);
    expect(result.stdout.trim()).toBe(`Deployed app to ${b.address}`);
    const lines = result.stderr.trim().split("\n");
    const ticks = lines.filter((l) => countdown.test(l)).map((l) => countdown.exec(l)!.slice(1).map(Number));
    // About one line a second (2s left, then 1s, in a 3s window); a stalled
    // read on a loaded machine may skip one, but the count only goes down
    // and the requests only up.
    const lefts = ticks.map(([left]) => left!);
    expect(lefts.length).toBeGreaterThanOrEqual(1);
    expect(lefts.every((left, i) => left >= 1 && left <= 2 && (i === 0 || left < lefts[i - 1]!))).toBe(true);
    expect(ticks.every(([, n], i) => i === 0 || n! >= ticks[i - 1]![1]!)).toBe(true);
    const verified = lines.find((l) => l.startsWith(`Verified ${b.address}: `));
    expect(verified).toMatch(new RegExp(`^Verified ${b.address}: \\d+ requests, 0 errors \\(0%\\)$`));
    expect(lines.indexOf(verified!)).toBeLessThan(lines.indexOf(`Draining ${a.address} (up to 30s)`));
    // a got no request after the switch, but its health checks went on (it was kept ready), and it drained after the window.
    expect(a.requests).toBe(aRequests);
    expect(a.healthChecks).toBeGreaterThan(aChecks + 5);
    const drainedLine = await proxy.waitForLog((l) => l.msg === "Drained" && (l.targets as string[]).includes(a.address));
    const verifiedLog = proxy.logs.findIndex((l) => l.msg === "Verified");
    expect(verifiedLog).toBeGreaterThan(-1);
    expect(proxy.logs.indexOf(drainedLine)).toBeGreaterThan(verifiedLog);
    expect(roles((await adminServices(proxy))[0]!.targets)).toEqual([{ address: b.address, state: "healthy", role: "writer" }]);
    expect(samples.filter((s) => s.status !== 200)).toEqual([]);
    expect(samples.at(-1)!.backend).toBe("b");
    expect(await lastRecord(proxy)).toMatchObject({ command: "deploy", outcome: "ok", before: { targets: [a.address] }, after: { targets: [b.address] } });
  }, SLOW);
}

test("connection failures count: a new target that refuses connections is switched away from, its 502s named", async () => {
  const proxy = await startProxy();
  const a = backend("a");
  await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, ...FAST]);
  const dead = `127.0.0.1:${await deadPort()}`;
  const load = startLoad(proxy, HOST, { loops: 2, maxPerLoop: 4000 });
  await load.reached(10);
  // --force: nothing health-checks the dead target; only the window stands between it and the clients.
  const result = await proxy.cli(["deploy", "app", "--host", HOST, "--target", dead, "--force", "--verify-window", "20s", "--verify-max-errors", "50%", "--verify-min-requests", "5", ...FAST]);
  const mark = load.samples.length;
  await load.reached(mark + 50);
  const samples = await load.stop();
  expect(result.code).toBe(1);
  expect(result.stderr).toMatch(new RegExp(`Error: error rate 100% of \\d+ requests to ${dead} is over 50%; traffic is back on ${a.address} \\(first failures: 502 /echo \\(target failed: ECONNREFUSED\\)`));
  // The clients' failures are the dead target's 502s, and none after the switch back.
  expect(samples.filter((s) => s.status !== 200 && s.status !== 502)).toEqual([]);
  expect(samples.slice(mark).every((s) => s.status === 200 && s.backend === "a")).toBe(true);
  expect(await answering(proxy)).toBe("a");
}, SLOW);

test("bad limits are refused naming the value, and nothing changes; a first deploy has nothing to go back to", async () => {
  const proxy = await startProxy();
  const [a, b] = [backend("a"), backend("b")];
  const first = await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", a.address, "--verify-window", "1s", ...FAST]);
  expect(first.stderr).toContain("Not verifying: a new service has no previous targets to switch back from");
  const before = await snapshot(proxy);
  const historyBefore = await mustRun(proxy, ["history", "app", "--json"]);

  const cases: [string[], string][] = [
    [["--verify-window", "soon"], 'Error: --verify-window: invalid duration "soon" (use e.g. 500ms, 30s, 2m, 1h, 1m30s)'],
    [["--verify-window", "10s", "--verify-max-errors", "150%"], 'Error: --verify-max-errors: invalid percentage "150%" (expected 0-100, e.g. 5%)'],
    [["--verify-window", "10s", "--verify-max-errors", "lots"], 'Error: --verify-max-errors: invalid percentage "lots" (expected 0-100, e.g. 5%)'],
    [["--verify-window", "10s", "--verify-min-requests", "0"], 'Error: --verify-min-requests: invalid count "0" (expected a whole number of at least 1)'],
    [["--verify-max-errors", "5%"], "Error: --verify-max-errors and --verify-min-requests need --verify-window"],
  ];
  for (const [flags, message] of cases) {
    const result = await proxy.cli(["deploy", "app", "--host", HOST, "--target", b.address, ...flags, ...FAST]);
    expect([result.code, result.stderr.trim()]).toEqual([1, message]);
  }
  expect(await snapshot(proxy)).toEqual(before);
  expect(await answering(proxy)).toBe("a");
  // The server-side refusal ran the command, so it is recorded as a failed deploy that changed nothing; the CLI's refusals never reached it.
  const records = (JSON.parse((await mustRun(proxy, ["history", "app", "--json"])).stdout) as { records: HistoryRecord[] }).records;
  const earlier = (JSON.parse(historyBefore.stdout) as { records: HistoryRecord[] }).records;
  expect(records.slice(earlier.length).map((r) => [r.outcome, r.after.targets])).toEqual([["failed", [a.address]]]);
  // The same deploy with a window whose new target does nothing wrong passes it.
  const ok = await mustRun(proxy, ["deploy", "app", "--host", HOST, "--target", b.address, "--verify-window", "500ms", ...FAST]);
  expect(ok.stderr).toContain(`Verified ${b.address}: 0 requests, 0 errors (0%) (fewer than 20 requests: not judged)`);
  expect(await answering(proxy)).toBe("b");
}, SLOW);
