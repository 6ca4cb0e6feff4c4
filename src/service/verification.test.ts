import { expect, test } from "bun:test";
import { describeFailures, describeTally, emptyTally, FIRST_FAILURES, formatPercent, overLimit, reportEveryMs, sumTallies, TargetTally, watchWindow, type Tally } from "./verification.ts";

test("a tally counts every answer but the client's own give-ups (499), 5xx as errors, and keeps the first failures", () => {
  const tally = new TargetTally(7);
  tally.record(200, "/a");
  tally.record(404, "/missing");
  tally.record(499, "/gone");
  for (let i = 0; i < FIRST_FAILURES + 2; i++) tally.record(500, `/fail/${i}`);
  tally.record(502, "/late", "target failed: ECONNREFUSED");
  expect(tally.window).toBe(7);
  expect(tally.requests).toBe(2 + FIRST_FAILURES + 3);
  expect(tally.errors).toBe(FIRST_FAILURES + 3);
  expect(tally.failures.map((f) => f.path)).toEqual(Array.from({ length: FIRST_FAILURES }, (_, i) => `/fail/${i}`));
  expect(JSON.parse(JSON.stringify(tally))).toEqual({ requests: tally.requests, errors: tally.errors, failures: tally.failures });
});

test("tallies of several targets or workers add up; the failures stay the first few", () => {
  const a: Tally = { requests: 10, errors: 2, failures: [{ status: 500, path: "/a" }, { status: 503, path: "/b" }] };
  const b: Tally = { requests: 5, errors: 5, failures: Array.from({ length: 5 }, (_, i) => ({ status: 502, path: `/c${i}`, reason: "target failed: ECONNREFUSED" })) };
  const sum = sumTallies([a, undefined, b]);
  expect([sum.requests, sum.errors, sum.failures.length]).toEqual([15, 7, FIRST_FAILURES]);
  expect(sum.failures.slice(0, 3).map((f) => f.path)).toEqual(["/a", "/b", "/c0"]);
  expect(sumTallies([])).toEqual(emptyTally());
  expect(describeFailures(sum.failures.slice(1, 3))).toBe("503 /b, 502 /c0 (target failed: ECONNREFUSED)");
});

test("the limit is passed only above the rate, and only with enough requests seen", () => {
  const policy = { windowMs: 1000, maxErrorPercent: 5, minRequests: 20 };
  expect(overLimit({ requests: 19, errors: 19, failures: [] }, policy)).toBe(false);
  expect(overLimit({ requests: 20, errors: 1, failures: [] }, policy)).toBe(false); // exactly 5%
  expect(overLimit({ requests: 20, errors: 2, failures: [] }, policy)).toBe(true);
  expect(overLimit({ requests: 100, errors: 0, failures: [] }, { ...policy, maxErrorPercent: 0 })).toBe(false);
  expect(overLimit({ requests: 100, errors: 1, failures: [] }, { ...policy, maxErrorPercent: 0 })).toBe(true);
  expect([formatPercent(0), formatPercent(0.588), formatPercent(19.84), formatPercent(100), formatPercent(0.04)]).toEqual(["0%", "0.59%", "19.8%", "100%", "0.04%"]);
  expect(describeTally({ requests: 1, errors: 1, failures: [] })).toBe("1 request, 1 error (100%)");
  expect([reportEveryMs(30_000), reportEveryMs(60_000), reportEveryMs(120_000)]).toEqual([1000, 1000, 5000]);
});

test("a window passes at its end, after a last read (its once-a-second reports are checked end to end)", async () => {
  let reads = 0;
  const lines: string[] = [];
  const started = performance.now();
  const outcome = await watchWindow("web-2:3000", { windowMs: 400, maxErrorPercent: 5, minRequests: 1 }, async () => ({ requests: ++reads * 10, errors: 0, failures: [] }), (l) => void lines.push(l));
  expect(performance.now() - started).toBeGreaterThanOrEqual(390);
  expect(outcome.passed).toBe(true);
  expect(reads).toBe(2); // at 250ms, and at the end
  expect(outcome.tally.requests).toBe(20);
  expect(lines).toEqual([]);
});

test("a window ends at the first read over the limit", async () => {
  let reads = 0;
  const started = performance.now();
  const outcome = await watchWindow("web-2:3000", { windowMs: 30_000, maxErrorPercent: 5, minRequests: 20 }, async () => {
    reads++;
    return reads < 3 ? { requests: 10, errors: 10, failures: [] } : { requests: 40, errors: 4, failures: [{ status: 500, path: "/x" }] };
  }, () => {});
  expect(outcome).toEqual({ passed: false, tally: { requests: 40, errors: 4, failures: [{ status: 500, path: "/x" }] } });
  expect(reads).toBe(3);
  expect(performance.now() - started).toBeLessThan(2_000);
});
