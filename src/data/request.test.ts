import { expect, test } from "bun:test";
import { Cancel, ClientGone, type Cancellable } from "./request.ts";

function listener() {
  const reasons: Error[] = [];
  const l: Cancellable & { reasons: Error[] } = { reasons, cancel: (reason) => void reasons.push(reason) };
  return l;
}

test("firing tells the listener once, with the reason", () => {
  const gone = new Cancel();
  const l = listener();
  gone.listen(l);
  expect(gone.reason).toBeUndefined();
  const reason = new ClientGone();
  gone.fire(reason);
  gone.fire(new Error("second"));
  expect(l.reasons).toEqual([reason]);
  expect(gone.reason).toBe(reason);
});

test("a listener set after the fire is told at once", () => {
  const gone = new Cancel();
  gone.fire(new Error("early"));
  const l = listener();
  gone.listen(l);
  expect(l.reasons.map((e) => e.message)).toEqual(["early"]);
});

test("only the latest listener is told; undefined forgets it", () => {
  const gone = new Cancel();
  const first = listener();
  const second = listener();
  gone.listen(first);
  gone.listen(second);
  gone.listen(undefined);
  gone.fire(new Error("x"));
  expect(first.reasons).toEqual([]);
  expect(second.reasons).toEqual([]);
  const late = listener();
  gone.listen(late);
  expect(late.reasons).toHaveLength(1);
});

test("ClientGone is the client disconnecting", () => {
  const e = new ClientGone();
  expect(e).toBeInstanceOf(Error);
  expect(e.name).toBe("ClientGone");
  expect(e.message).toBe("client disconnected");
});
