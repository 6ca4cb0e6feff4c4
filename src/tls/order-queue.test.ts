import { expect, test } from "bun:test";
import { OrderQueue } from "./order-queue.ts";

test("runs at most `limit` orders at once, the rest in arrival order", async () => {
  const queue = new OrderQueue(2);
  let running = 0;
  let most = 0;
  const started: number[] = [];
  const releases: (() => void)[] = [];
  const orders = [0, 1, 2, 3, 4].map((i) =>
    queue.run(async () => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => releases.push(resolve));
      running--;
      return i;
    }),
  );
  await Bun.sleep(0);
  expect(started).toEqual([0, 1]);
  expect(queue.queued).toBe(3);
  while (releases.length) {
    releases.shift()!();
    await Bun.sleep(0);
  }
  expect(await Promise.all(orders)).toEqual([0, 1, 2, 3, 4]);
  expect(started).toEqual([0, 1, 2, 3, 4]);
  expect(most).toBe(2);
});

test("a failed order frees its slot", async () => {
  const queue = new OrderQueue(1);
  const failed = queue.run(() => Promise.reject(new Error("no")));
  const next = queue.run(async () => "ran");
  await expect(failed).rejects.toThrow("no");
  expect(await next).toBe("ran");
});
