import { expect, test } from "bun:test";
import { DrainCancelled, Target, TargetLeaving, type InFlight } from "./target.ts";

/** Something in flight on `target` that records why it was cancelled and, like the real ones, ends itself then. */
function request(target: Target, websocket = false) {
  const reasons: Error[] = [];
  const entry: InFlight & { reasons: Error[] } = {
    websocket,
    reasons,
    cancel(reason) {
      reasons.push(reason);
      target.end(entry);
    },
  };
  target.begin(entry);
  return entry;
}

test("a new target is adding, not checked yet, with nothing in flight", () => {
  const t = new Target("web-1:3000");
  expect(t.address).toBe("web-1:3000");
  expect(t.health).toBe("adding");
  expect(t.lastCheck).toBe("not checked yet");
  expect(t.inflightCount).toBe(0);
});

test("begin and end count what is in flight; ending twice, or something unknown, changes nothing", () => {
  const t = new Target("a:1");
  const one = request(t);
  const two = request(t);
  expect(t.inflightCount).toBe(2);
  t.end(one);
  t.end(one);
  expect(t.inflightCount).toBe(1);
  t.end({ websocket: false, cancel() {} });
  expect(t.inflightCount).toBe(1);
  t.end(two);
  expect(t.inflightCount).toBe(0);
});

test("draining an idle target ends at once", async () => {
  expect(await new Target("a:1").drain(60_000)).toEqual({ cancelled: 0 });
});

test("a drain waits for the last request to end, cancelling nothing", async () => {
  const t = new Target("a:1");
  const [one, two] = [request(t), request(t)];
  let done = false;
  const drained = t.drain(60_000).then((r) => ((done = true), r));
  t.end(one);
  await Bun.sleep(0);
  expect(done).toBe(false);
  t.end(two);
  expect(await drained).toEqual({ cancelled: 0 });
  expect(one.reasons).toEqual([]);
  expect(two.reasons).toEqual([]);
});

test("at the drain deadline what is left is cancelled with DrainCancelled and counted", async () => {
  const t = new Target("a:1");
  const [one, two, three] = [request(t), request(t), request(t)];
  t.end(one);
  expect(await t.drain(20)).toEqual({ cancelled: 2 });
  expect(t.inflightCount).toBe(0);
  expect(one.reasons).toEqual([]);
  for (const entry of [two, three]) {
    expect(entry.reasons).toHaveLength(1);
    expect(entry.reasons[0]).toBeInstanceOf(DrainCancelled);
    expect(entry.reasons[0]!.message).toBe("drain timeout");
  }
});

test("an entry that does not end itself when cancelled is still cleared at the deadline", async () => {
  const t = new Target("a:1");
  const reasons: Error[] = [];
  t.begin({ websocket: false, cancel: (reason) => void reasons.push(reason) });
  expect(await t.drain(10)).toEqual({ cancelled: 1 });
  expect(t.inflightCount).toBe(0);
  expect(reasons.map((r) => r.name)).toEqual(["DrainCancelled"]);
});

test("a leaving target closes its WebSockets at once with TargetLeaving; its requests drain as usual", async () => {
  const t = new Target("a:1");
  const socket = request(t, true);
  const http = request(t);
  const drained = t.drain(60_000, true);
  expect(socket.reasons).toHaveLength(1);
  expect(socket.reasons[0]).toBeInstanceOf(TargetLeaving);
  expect(socket.reasons[0]!.message).toBe("target drained");
  expect(http.reasons).toEqual([]);
  expect(t.inflightCount).toBe(1);
  t.end(http);
  expect(await drained).toEqual({ cancelled: 0 });
});

test("without closeWebSockets a WebSocket holds the drain like any request", async () => {
  const t = new Target("a:1");
  const socket = request(t, true);
  expect(await t.drain(10)).toEqual({ cancelled: 1 });
  expect(socket.reasons.map((r) => r.name)).toEqual(["DrainCancelled"]);
});

test("several drains of one target all end when it goes idle", async () => {
  const t = new Target("a:1");
  const entry = request(t);
  const drains = [t.drain(60_000), t.drain(60_000)];
  t.end(entry);
  expect(await Promise.all(drains)).toEqual([{ cancelled: 0 }, { cancelled: 0 }]);
});
