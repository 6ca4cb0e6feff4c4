import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import { BytesSource, readAll, WebStreamSource, type BodySink } from "../data/body.ts";
import { BodyTooLarge, bufferBody, limitBody } from "./buffer.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);
const chunksOf = (...parts: string[]) => parts.map(bytes);
const spillFiles = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith(`parachute-buffer-${process.pid}-`)).sort();

/** Waits (up to 2 s) for an asynchronous removal to show; returns whether it did. */
async function eventually(ok: () => boolean): Promise<boolean> {
  for (const deadline = Date.now() + 2000; Date.now() < deadline; await Bun.sleep(2)) if (ok()) return true;
  return ok();
}

/** A source that counts cancels, around the real BytesSource. */
function watched(parts: string[]) {
  const inner = new BytesSource(chunksOf(...parts));
  const cancels: Error[] = [];
  return {
    cancels,
    source: { length: inner.length, start: (s: BodySink) => inner.start(s), resume: () => inner.resume(), cancel: (e: Error) => (cancels.push(e), inner.cancel()) },
  };
}

/** A web stream that delivers `parts` and then fails. */
function failingStream(parts: string[], message: string) {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < parts.length) controller.enqueue(bytes(parts[i++]!));
      else controller.error(new Error(message));
    },
  });
}

test("a body within the memory limit stays in memory", async () => {
  const before = spillFiles();
  const buffered = await bufferBody(new BytesSource(chunksOf("hello ", "world")), 1024, 0);
  expect(buffered.size).toBe(11);
  expect(buffered.source).toBeInstanceOf(BytesSource);
  expect(buffered.source.length).toBe(11);
  expect(text(await readAll(buffered.source))).toBe("hello world");
  expect(spillFiles()).toEqual(before);
  buffered.dispose();
});

test("exactly the memory limit still stays in memory; an empty body too", async () => {
  const exact = await bufferBody(new BytesSource(chunksOf("12", "34")), 4, 0);
  expect(exact.source).toBeInstanceOf(BytesSource);
  expect(text(await readAll(exact.source))).toBe("1234");
  const empty = await bufferBody(new BytesSource([]), 0, 0);
  expect(empty.size).toBe(0);
  expect((await readAll(empty.source)).byteLength).toBe(0);
});

test("above the memory limit the body spills to a private temp file, read back whole, removed once read", async () => {
  const before = spillFiles();
  const parts = ["aaaa", "bbbb", "cccc", "dd"];
  const buffered = await bufferBody(new BytesSource(chunksOf(...parts)), 5, 0);
  expect(buffered.size).toBe(14);
  expect(buffered.source).toBeInstanceOf(WebStreamSource);
  expect(buffered.source.length).toBe(14);
  const added = spillFiles().filter((f) => !before.includes(f));
  expect(added).toHaveLength(1);
  const file = `${os.tmpdir()}/${added[0]}`;
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(fs.readFileSync(file, "utf8")).toBe("aaaabbbbccccdd");
  expect(text(await readAll(buffered.source))).toBe("aaaabbbbccccdd");
  expect(await eventually(() => !fs.existsSync(file))).toBe(true); // fs.rm is asynchronous
  buffered.dispose(); // again: harmless
});

test("dispose removes a spill file that was never read", async () => {
  const before = spillFiles();
  const big = "x".repeat(100_000);
  const buffered = await bufferBody(new BytesSource([bytes(big), bytes(big)]), 1024, 0);
  const added = spillFiles().filter((f) => !before.includes(f));
  expect(added).toHaveLength(1);
  expect(fs.statSync(`${os.tmpdir()}/${added[0]}`).size).toBe(200_000);
  buffered.dispose();
  expect(await eventually(() => spillFiles().length === before.length)).toBe(true);
  expect(spillFiles()).toEqual(before);
});

test("over maxBytes: BodyTooLarge naming the limit, the source cancelled", async () => {
  const { source, cancels } = watched(["1234", "5678"]);
  const error = await bufferBody(source, 1024, 6).catch((e: Error) => e);
  expect(error).toBeInstanceOf(BodyTooLarge);
  expect((error as Error).message).toBe("body is larger than 6 bytes");
  expect(cancels).toHaveLength(1);
  expect(cancels[0]).toBeInstanceOf(BodyTooLarge);
});

test("exactly maxBytes is accepted; 0 means no limit", async () => {
  expect((await bufferBody(new BytesSource(chunksOf("1234", "56")), 1024, 6)).size).toBe(6);
  expect((await bufferBody(new BytesSource([new Uint8Array(50_000)]), 1024, 0)).size).toBe(50_000);
});

test("over maxBytes after spilling: rejected and the spill file removed", async () => {
  const before = spillFiles();
  const error = await bufferBody(new BytesSource(chunksOf("aaaa", "bbbb", "cccc")), 2, 10).catch((e: Error) => e);
  expect((error as Error).message).toBe("body is larger than 10 bytes");
  expect(await eventually(() => spillFiles().length === before.length)).toBe(true);
  expect(spillFiles()).toEqual(before);
});

test("a source that fails makes the buffer fail with its error", async () => {
  const error = await bufferBody(new WebStreamSource(failingStream(["abc"], "client went away"), undefined), 1024, 0).catch((e: Error) => e);
  expect((error as Error).message).toBe("client went away");
  const before = spillFiles();
  const spilled = await bufferBody(new WebStreamSource(failingStream(["abcdef", "ghijkl"], "cut"), undefined), 4, 0).catch((e: Error) => e);
  expect((spilled as Error).message).toBe("cut");
  expect(await eventually(() => spillFiles().length === before.length)).toBe(true);
  expect(spillFiles()).toEqual(before);
});

test("limitBody passes a body up to the limit through, keeping its length", async () => {
  const limited = limitBody(new BytesSource(chunksOf("ab", "cd")), 4);
  expect(limited.length).toBe(4);
  expect(text(await readAll(limited))).toBe("abcd");
});

test("limitBody stops past the limit: the consumer gets BodyTooLarge, the source is cancelled", async () => {
  const { source, cancels } = watched(["ab", "cd", "ef"]);
  const limited = limitBody(source, 3);
  const error = await readAll(limited).catch((e: Error) => e);
  expect(error).toBeInstanceOf(BodyTooLarge);
  expect((error as Error).message).toBe("body is larger than 3 bytes");
  expect(cancels.map((e) => e.message)).toEqual(["body is larger than 3 bytes"]);
});

test("limitBody passes backpressure, resume and cancel through", () => {
  const { source, cancels } = watched(["a", "b", "c"]);
  const limited = limitBody(source, 10);
  const got: string[] = [];
  let ended = false;
  limited.start({ data: (c) => (got.push(text(c)), false), end: () => (ended = true), error: () => {} });
  expect(got).toEqual(["a"]);
  limited.resume();
  expect(got).toEqual(["a", "b"]);
  limited.resume();
  limited.resume();
  expect(got).toEqual(["a", "b", "c"]);
  expect(ended).toBe(true);
  limited.cancel(new Error("gone"));
  expect(cancels.map((e) => e.message)).toEqual(["gone"]);
});
