import { expect, test } from "bun:test";
import { StallWatch } from "./stalls.ts";

function item() {
  const it = { destroyed: false, destroy: () => (it.destroyed = true) };
  return it;
}

test("a connection blocked past the limit is closed; one that took its bytes in time is not", () => {
  const watch = new StallWatch(60_000);
  const stuck = item();
  const slow = item();
  watch.blocked(stuck, 0);
  watch.blocked(slow, 0);
  watch.blocked(stuck, 30_000); // still blocked: the clock does not restart
  watch.unblocked(slow); // it took what was queued
  watch.blocked(slow, 50_000); // and blocked again later
  expect(watch.sweep(59_999)).toEqual([]);
  expect(watch.sweep(60_000)).toEqual([stuck]);
  expect([stuck.destroyed, slow.destroyed]).toEqual([true, false]);
  expect(watch.size).toBe(1);
  expect(watch.sweep(110_000)).toEqual([slow]);
  expect(watch.size).toBe(0);
});
