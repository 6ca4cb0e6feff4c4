import { expect, test } from "bun:test";
import { BytesSource, readAll, toReadableStream, WebStreamSource, type BodySink } from "./body.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

/** A sink that records what it gets and answers `room` to each chunk. */
function recordingSink(room: () => boolean = () => true) {
  const log: string[] = [];
  let settle!: () => void;
  const done = new Promise<void>((resolve) => (settle = resolve));
  const sink: BodySink = {
    data: (chunk) => (log.push(text(chunk)), room()),
    end: () => (log.push("<end>"), settle()),
    error: (error) => (log.push(`<error ${error.message}>`), settle()),
  };
  return { log, sink, done };
}

function streamOf(parts: string[], failWith?: string) {
  let i = 0;
  let cancelled: unknown;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < parts.length) controller.enqueue(bytes(parts[i++]!));
      else if (failWith) controller.error(new Error(failWith));
      else controller.close();
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  return { stream, cancelled: () => cancelled, pulled: () => i };
}

test("BytesSource: its length, its chunks in order, then one end", () => {
  const source = new BytesSource([bytes("ab"), bytes(""), bytes("cde")]);
  expect(source.length).toBe(5);
  const { log, sink } = recordingSink();
  source.start(sink);
  expect(log).toEqual(["ab", "", "cde", "<end>"]);
  source.resume();
  expect(log).toEqual(["ab", "", "cde", "<end>"]);
});

test("BytesSource waits for resume when the sink is full, and ends once", () => {
  const source = new BytesSource([bytes("a"), bytes("b")]);
  const { log, sink } = recordingSink(() => false);
  source.start(sink);
  expect(log).toEqual(["a"]);
  source.resume();
  expect(log).toEqual(["a", "b"]);
  source.resume();
  expect(log).toEqual(["a", "b", "<end>"]);
  source.resume();
  expect(log).toEqual(["a", "b", "<end>"]);
});

test("BytesSource: an empty body just ends; a cancelled one stops", () => {
  const empty = recordingSink();
  new BytesSource([]).start(empty.sink);
  expect(empty.log).toEqual(["<end>"]);
  const source = new BytesSource([bytes("a"), bytes("b")]);
  const paused = recordingSink(() => false);
  source.start(paused.sink);
  source.cancel();
  source.resume();
  expect(paused.log).toEqual(["a"]);
});

test("WebStreamSource relays the stream, then ends and reports it finished", async () => {
  let finished = 0;
  const { stream } = streamOf(["one", "two", "three"]);
  const source = new WebStreamSource(stream, 11, () => finished++);
  expect(source.length).toBe(11);
  const { log, sink, done } = recordingSink();
  source.start(sink);
  await done;
  expect(log).toEqual(["one", "two", "three", "<end>"]);
  expect(finished).toBe(1);
});

test("WebStreamSource pauses on a full sink and reads on at resume", async () => {
  const s = streamOf(["a", "b", "c"]);
  const source = new WebStreamSource(s.stream, undefined);
  let room = false;
  const { log, sink, done } = recordingSink(() => room);
  source.start(sink);
  await Bun.sleep(5);
  expect(log).toEqual(["a"]);
  room = true;
  source.resume();
  await done;
  expect(log).toEqual(["a", "b", "c", "<end>"]);
});

test("WebStreamSource: a failing stream is an error for the sink", async () => {
  let finished = 0;
  const source = new WebStreamSource(streamOf(["x"], "reset by peer").stream, undefined, () => finished++);
  const { log, sink, done } = recordingSink();
  source.start(sink);
  await done;
  expect(log).toEqual(["x", "<error reset by peer>"]);
  expect(finished).toBe(1);
});

test("WebStreamSource: cancel cancels the stream with the reason, once, and nothing more reaches the sink", async () => {
  let finished = 0;
  const s = streamOf(["a", "b", "c"]);
  const source = new WebStreamSource(s.stream, undefined, () => finished++);
  const { log, sink } = recordingSink(() => false);
  source.start(sink);
  await Bun.sleep(5);
  const reason = new Error("client gone");
  source.cancel(reason);
  source.cancel(new Error("again"));
  source.resume();
  await Bun.sleep(5);
  expect(log).toEqual(["a"]);
  expect(s.cancelled()).toBe(reason);
  expect(finished).toBe(1);
});

test("toReadableStream delivers the source and reports the bytes sent", async () => {
  const outcomes: unknown[] = [];
  const stream = toReadableStream(new BytesSource([bytes("hello "), bytes("world")]), (o) => outcomes.push(o));
  expect(await new Response(stream).text()).toBe("hello world");
  expect(outcomes).toEqual([{ bytes: 11 }]);
});

test("toReadableStream: a source that breaks off errors the stream and reports why", async () => {
  const outcomes: unknown[] = [];
  const source = new WebStreamSource(streamOf(["abc"], "target died").stream, undefined);
  const stream = toReadableStream(source, (o) => outcomes.push(o));
  const error = await new Response(stream).text().catch((e: Error) => e);
  expect((error as Error).message).toBe("target died");
  expect(outcomes).toEqual([{ bytes: 3, error: "target died" }]);
});

test("toReadableStream: a reader that cancels before the end cancels the source, reported as a disconnect", async () => {
  const outcomes: unknown[] = [];
  let cancelledWith: unknown;
  let sent = false;
  // One chunk, then the body stays open (an event stream, say).
  const open = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (!sent) controller.enqueue(bytes("a"));
      sent = true;
      return new Promise(() => {});
    },
    cancel: (reason) => void (cancelledWith = reason),
  });
  const reader = toReadableStream(new WebStreamSource(open, undefined), (o) => outcomes.push(o)).getReader();
  expect(text((await reader.read()).value!)).toBe("a");
  const reason = new Error("bye");
  await reader.cancel(reason);
  expect(outcomes).toEqual([{ bytes: 1, error: "client disconnected" }]);
  await Bun.sleep(0);
  expect(cancelledWith).toBe(reason);
});

test("toReadableStream: a body fully handed over before the reader cancels counts as complete", async () => {
  const outcomes: unknown[] = [];
  const reader = toReadableStream(new BytesSource([bytes("a"), bytes("b")]), (o) => outcomes.push(o)).getReader();
  expect(text((await reader.read()).value!)).toBe("a");
  await reader.cancel(new Error("bye"));
  expect(outcomes).toEqual([{ bytes: 2 }]);
});

test("readAll: one chunk as it is, several joined, a failure rejects", async () => {
  const one = bytes("only");
  expect(await readAll(new BytesSource([one]))).toBe(one);
  expect(text(await readAll(new BytesSource([bytes("a"), bytes("bc"), bytes("d")])))).toBe("abcd");
  expect((await readAll(new BytesSource([]))).byteLength).toBe(0);
  const error = await readAll(new WebStreamSource(streamOf(["a"], "boom").stream, undefined)).catch((e: Error) => e);
  expect((error as Error).message).toBe("boom");
});
