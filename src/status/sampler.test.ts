import { expect, test } from "bun:test";
import { Metrics } from "../metrics.ts";
import { pointBetween, quantile, readingOf, TrafficSampler, type ServiceTotals } from "./sampler.ts";

test("quantile interpolates within the bucket the rank falls in, as histogram_quantile does", () => {
  const bounds = [0.1, 0.5, 1];
  // 10 observations: 4 up to 0.1 s, 4 more up to 0.5 s, 2 more up to 1 s.
  expect(quantile(0.5, [4, 8, 10], 10, bounds)).toBeCloseTo(0.1 + 0.4 * (1 / 4));
  expect(quantile(0.2, [4, 8, 10], 10, bounds)).toBeCloseTo(0.05);
  expect(quantile(0.99, [4, 8, 10], 10, bounds)).toBeCloseTo(0.5 + 0.5 * (1.9 / 2));
  // Above the last bound, it is that bound; nothing observed, no value.
  expect(quantile(0.99, [0, 0, 1], 3, bounds)).toBe(1);
  expect(quantile(0.5, [0, 0, 0], 0, bounds)).toBeNull();
});

test("readingOf sums every process's series per service, counting 5xx and in-flight", () => {
  const one = new Metrics();
  const two = new Metrics();
  one.recordRequest("web", "GET", 200, 0.004);
  one.recordRequest("web", "POST", 502, 0.2);
  two.recordRequest("web", "GET", 503, 0.004);
  two.recordRequest("api", "GET", 200, 70);
  const samples = [one, two].map((m, i) => ({ ...m.requestSamples(), inFlight: [{ service: "web", value: i + 1, paused: i }] }));
  const reading = readingOf(samples, 1000);
  const web = reading.services.get("web")!;
  expect([web.requests, web.errors, web.observed, web.inFlight, web.waiting]).toEqual([3, 2, 3, 3, 1]);
  expect(web.buckets[0]).toBe(2); // the two 4 ms requests are within 5 ms
  const api = reading.services.get("api")!;
  expect([api.requests, api.observed, api.buckets.at(-1)]).toEqual([1, 1, 0]); // 70 s is above every bound
});

const totals = (requests: number, errors: number, fast: number, inFlight = 0): ServiceTotals => {
  const buckets = Array.from({ length: 13 }, (_, i) => (i === 0 ? fast : requests));
  return { requests, errors, buckets, observed: requests, inFlight, waiting: 0 };
};

test("a point is the rates and latencies of the interval between two readings", () => {
  const point = pointBetween(totals(10, 1, 10), totals(30, 6, 20, 4), 5, 9000);
  expect(point.t).toBe(9000);
  expect(point.requestRate).toBe(4);
  expect(point.errorRate).toBe(1);
  expect(point.p50).toBeCloseTo(0.005 * (10 / 10)); // half of the 20 new requests are within 5 ms
  expect(point.p99).toBeGreaterThan(0.005);
  expect(point.inFlight).toBe(4);
  // Counters that went back (a worker restarted) give no rates rather than negative ones.
  expect(pointBetween(totals(30, 6, 20), totals(5, 0, 5), 5, 1).requestRate).toBeNull();
  // No request ended in the interval: rates are 0, latencies have no value.
  const idle = pointBetween(totals(3, 0, 3), totals(3, 0, 3), 5, 1);
  expect([idle.requestRate, idle.p50, idle.p99]).toEqual([0, null, null]);
});

/** A sampler over a fake clock, reading a counter the test moves. */
function sampler(settings = { tickMs: 5, pointMs: 1000, windowMs: 10_000, pollGraceMs: 40 }) {
  const clock = { now: 0 };
  const metrics = new Metrics();
  const s = new TrafficSampler(async () => [metrics.requestSamples()], settings, () => clock.now);
  return { s, clock, metrics };
}

test("nobody looking: no timer and no reads; a stream runs the timer until released", async () => {
  const { s } = sampler();
  await Bun.sleep(30);
  expect([s.running, s.reads]).toEqual([false, 0]);
  const release = s.watch();
  expect(s.running).toBe(true);
  const readings: number[] = [];
  const off = s.onReading((r) => readings.push(r.at));
  while (readings.length < 2) await Bun.sleep(5);
  release();
  release(); // releasing twice is harmless
  while (s.running) await Bun.sleep(5);
  const reads = s.reads;
  await Bun.sleep(30);
  expect(s.reads).toBe(reads);
  off();
});

test("a poll keeps the timer going for the grace, then it stops", async () => {
  const { s, clock } = sampler();
  s.polled();
  expect(s.running).toBe(true);
  await Bun.sleep(20);
  expect(s.running).toBe(true);
  clock.now += 41;
  while (s.running) await Bun.sleep(5);
  expect(s.running).toBe(false);
});

test("points are taken once per interval, within the window; a gap nobody watched stays blank", async () => {
  const { s, clock, metrics } = sampler({ tickMs: 1000, pointMs: 1000, windowMs: 10_000, pollGraceMs: 0 });
  await s.sample(); // the baseline
  for (let i = 0; i < 4; i++) metrics.recordRequest("web", "GET", i === 0 ? 500 : 200, 0.001);
  clock.now = 500;
  await s.sample(); // too soon for a point
  expect(s.series("web")).toEqual([]);
  clock.now = 2000;
  await s.sample();
  expect(s.series("web")).toEqual([{ t: 2000, requestRate: 2, errorRate: 0.5, p50: expect.any(Number), p99: expect.any(Number), inFlight: 0 }]);
  // Nobody looked for a minute: the next reading is a new baseline, not a point averaged over the gap.
  metrics.recordRequest("web", "GET", 200, 0.001);
  clock.now = 62_000;
  await s.sample();
  expect(s.series("web")).toEqual([]); // the old point fell out of the window
  clock.now = 63_000;
  await s.sample();
  expect(s.series("web").map((p) => [p.t, p.requestRate])).toEqual([[63_000, 0]]);
  s.stop();
});

test("concurrent samples share one read", async () => {
  const { s } = sampler();
  const [a, b] = await Promise.all([s.sample(), s.sample()]);
  expect(a).toBe(b);
  expect(s.reads).toBe(1);
});
