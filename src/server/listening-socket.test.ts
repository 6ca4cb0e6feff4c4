import { expect, test } from "bun:test";
import { holdListeningSocket, releaseListeningSocket } from "./listening-socket.ts";

async function answerOnce(fd: number, port: number, host: string): Promise<string> {
  const listener = Bun.listen({
    fd,
    socket: {
      open(socket: { end(text: string): void }) {
        socket.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
      },
      data() {},
    },
  } as never) as { stop(force?: boolean): void };
  try {
    return await (await fetch(`http://${host}:${port}/`)).text();
  } finally {
    listener.stop(true);
  }
}

test("a held socket listens on a free port, and Bun.listen adopts its fd", async () => {
  const held = holdListeningSocket(0, "127.0.0.1");
  expect(held.port).toBeGreaterThan(0);
  expect(await answerOnce(held.fd, held.port, "127.0.0.1")).toBe("ok");
  releaseListeningSocket(held.fd);
});

test("IPv6 loopback and all interfaces (dual-stack) work", async () => {
  const six = holdListeningSocket(0, "::1");
  expect(await answerOnce(six.fd, six.port, "[::1]")).toBe("ok");
  releaseListeningSocket(six.fd);
  const any = holdListeningSocket(0, undefined);
  expect(await answerOnce(any.fd, any.port, "127.0.0.1")).toBe("ok");
  releaseListeningSocket(any.fd);
});

test("a port in use fails with EADDRINUSE, as Bun.listen does", () => {
  const first = holdListeningSocket(0, "127.0.0.1");
  expect(() => holdListeningSocket(first.port, "127.0.0.1")).toThrow(expect.objectContaining({ code: "EADDRINUSE" }));
  releaseListeningSocket(first.fd);
});
