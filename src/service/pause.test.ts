import { expect, test } from "bun:test";
import { PauseController } from "./pause.ts";

/** Whether the promise has settled by the time queued callbacks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await Bun.sleep(0);
  return done;
}

test("a running service lets requests through at once", async () => {
  const pause = new PauseController();
  expect(pause.mode).toBe("running");
  expect(await pause.wait()).toBe("running");
  expect(pause.waiting).toBe(0);
});

test("a stopped service answers at once with stopped, keeping its message", async () => {
  const pause = new PauseController();
  pause.stop("back soon");
  expect(pause.mode).toBe("stopped");
  expect(pause.message).toBe("back soon");
  expect(await pause.wait()).toBe("stopped");
  expect(pause.waiting).toBe(0);
});

test("a paused service holds requests until resume, and counts them", async () => {
  const pause = new PauseController();
  pause.pause(60_000);
  expect(pause.mode).toBe("paused");
  expect(pause.maxPauseMs).toBe(60_000);
  const first = pause.wait();
  const second = pause.wait();
  expect(pause.waiting).toBe(2);
  expect(await settled(first)).toBe(false);
  pause.resume();
  expect(pause.waiting).toBe(0);
  expect(await Promise.all([first, second])).toEqual(["running", "running"]);
  expect(pause.mode).toBe("running");
  expect(await pause.wait()).toBe("running");
});

test("stop answers the waiting requests with stopped; resume clears the message", async () => {
  const pause = new PauseController();
  pause.pause(60_000);
  const waiting = [pause.wait(), pause.wait(), pause.wait()];
  expect(pause.waiting).toBe(3);
  pause.stop("maintenance");
  expect(pause.waiting).toBe(0);
  expect(await Promise.all(waiting)).toEqual(["stopped", "stopped", "stopped"]);
  expect(pause.message).toBe("maintenance");
  pause.resume();
  expect(pause.message).toBe("");
  expect(pause.mode).toBe("running");
});

test("a request waits no longer than max-pause, then times out and is no longer counted", async () => {
  const pause = new PauseController();
  pause.pause(20);
  const started = performance.now();
  const waiting = pause.wait();
  expect(pause.waiting).toBe(1);
  expect(await waiting).toBe("timeout");
  expect(performance.now() - started).toBeGreaterThanOrEqual(15);
  expect(pause.waiting).toBe(0);
  expect(pause.mode).toBe("paused"); // the service itself stays paused
});

test("max-pause counts from when each request arrived, with the limit in force then", async () => {
  const pause = new PauseController();
  pause.pause(10);
  const short = pause.wait();
  pause.pause(60_000);
  const long = pause.wait();
  expect(await short).toBe("timeout");
  expect(pause.waiting).toBe(1);
  expect(await settled(long)).toBe(false);
  pause.resume();
  expect(await long).toBe("running");
});

test("a resumed request's max-pause timer is cleared: it is not answered twice or counted later", async () => {
  const pause = new PauseController();
  pause.pause(10);
  const waiting = pause.wait();
  pause.resume();
  expect(await waiting).toBe("running");
  pause.pause(60_000);
  const later = pause.wait();
  await Bun.sleep(20); // past the first request's max-pause
  expect(pause.waiting).toBe(1);
  expect(await settled(later)).toBe(false);
  pause.releaseForShutdown();
  expect(await later).toBe("shutdown");
});

test("releaseForShutdown answers waiting requests with shutdown and leaves the mode alone", async () => {
  const pause = new PauseController();
  pause.pause(60_000);
  const waiting = [pause.wait(), pause.wait()];
  pause.releaseForShutdown();
  expect(pause.waiting).toBe(0);
  expect(await Promise.all(waiting)).toEqual(["shutdown", "shutdown"]);
  expect(pause.mode).toBe("paused");
  const next = pause.wait();
  expect(pause.waiting).toBe(1);
  pause.resume();
  expect(await next).toBe("running");
});

test("releaseForShutdown with nobody waiting does nothing", async () => {
  const pause = new PauseController();
  pause.releaseForShutdown();
  expect(pause.mode).toBe("running");
  expect(await pause.wait()).toBe("running");
});
