import { describe, expect, test } from "bun:test";
import { closeFrame, FrameTracker } from "./websocket-tunnel.ts";

/** A WebSocket frame: FIN, opcode, optional mask, payload of `length` bytes. */
function frame(opcode: number, length: number, masked: boolean): Uint8Array {
  const header: number[] = [0x80 | opcode];
  const maskBit = masked ? 0x80 : 0;
  if (length < 126) header.push(maskBit | length);
  else if (length < 65536) header.push(maskBit | 126, length >> 8, length & 0xff);
  else header.push(maskBit | 127, 0, 0, 0, 0, (length >>> 24) & 0xff, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff);
  if (masked) header.push(1, 2, 3, 4);
  const out = new Uint8Array(header.length + length);
  out.set(header);
  return out;
}

describe("FrameTracker", () => {
  test("follows frames of every length form, split anywhere", () => {
    const bytes = Buffer.concat([frame(1, 5, true), frame(2, 300, false), frame(2, 70_000, true), frame(9, 0, false)]);
    for (const piece of [1, 7, 1000, bytes.length]) {
      const tracker = new FrameTracker();
      for (let i = 0; i < bytes.length; i += piece) tracker.advance(bytes.subarray(i, i + piece));
      expect(tracker.atBoundary).toBe(true);
    }
  });

  test("stops at the end of the frame in progress when asked", () => {
    const first = frame(1, 10, false);
    const bytes = Buffer.concat([first, frame(1, 10, false)]);
    const tracker = new FrameTracker();
    expect(tracker.advance(bytes.subarray(0, 4))).toBe(4);
    expect(tracker.atBoundary).toBe(false);
    expect(tracker.advance(bytes.subarray(4), true)).toBe(first.length - 4);
    expect(tracker.atBoundary).toBe(true);
    expect(tracker.advance(bytes.subarray(first.length), true)).toBe(0);
  });

  test("notices a close frame going by", () => {
    const tracker = new FrameTracker();
    tracker.advance(frame(1, 3, false));
    expect(tracker.sawClose).toBe(false);
    tracker.advance(frame(8, 2, false));
    expect(tracker.sawClose).toBe(true);
  });
});

describe("closeFrame", () => {
  test("to a client: unmasked, with the code and reason", () => {
    const f = closeFrame(1001, "going away", false);
    expect([f[0], f[1]]).toEqual([0x88, 12]);
    expect((f[2]! << 8) | f[3]!).toBe(1001);
    expect(Buffer.from(f.subarray(4)).toString()).toBe("going away");
  });

  test("to a server: masked (RFC 6455 §5.3), and it unmasks to the same payload", () => {
    const f = closeFrame(1001, "bye", true);
    expect([f[0], f[1]! & 0x80, f[1]! & 0x7f]).toEqual([0x88, 0x80, 5]);
    const mask = f.subarray(2, 6);
    const payload = f.subarray(6).map((b, i) => b ^ mask[i & 3]!);
    expect((payload[0]! << 8) | payload[1]!).toBe(1001);
    expect(Buffer.from(payload.subarray(2)).toString()).toBe("bye");
  });
});
