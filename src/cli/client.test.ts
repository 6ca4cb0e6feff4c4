import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { AdminClient, CliError } from "./client.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-client-"));
const socket = path.join(dir, "admin.sock");
const received: { method: string; path: string; type: string | null; body: string }[] = [];

/** An ndjson answer sent in pieces that split lines, as a slow server would. */
function ndjson(pieces: string[]): Response {
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = pieces.shift();
      if (next === undefined) return controller.close();
      controller.enqueue(new TextEncoder().encode(next));
      await Bun.sleep(1);
    },
  });
  return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
}

const server = Bun.serve({
  unix: socket,
  async fetch(req) {
    const url = new URL(req.url);
    received.push({ method: req.method, path: url.pathname, type: req.headers.get("content-type"), body: await req.text() });
    switch (url.pathname) {
      case "/services":
        return Response.json({ services: [{ name: "web" }] });
      case "/refused":
        return Response.json({ error: "no service named nope" }, { status: 404 });
      case "/html":
        return new Response("<html>oops</html>", { status: 502 });
      case "/plain-error":
        return new Response("{}", { status: 500 });
      case "/deploy":
        return ndjson(['{"progress":"Target a:1: adding"}\n{"prog', 'ress":"Target a:1: healthy"}\n\n', '{"ok":true}\n']);
      case "/failing":
        return ndjson(['{"progress":"checking"}\n', '{"error":"target a:1 failed to become healthy"}\n']);
      case "/no-result":
        return ndjson(['{"progress":"checking"}\n']);
      case "/json-ok":
        return Response.json({ ok: true });
      case "/json-error":
        return Response.json({ error: "--target: at least one target is required" }, { status: 400 });
      default:
        return new Response("not found", { status: 404 });
    }
  },
});
// A server that starts a chunked answer and drops the connection in the middle of it.
const cutSocket = path.join(dir, "cut.sock");
const cutter = Bun.listen({
  unix: cutSocket,
  socket: {
    data(s) {
      s.write('HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n18\r\n{"progress":"checking"}\n\r\n');
      setTimeout(() => s.end(), 5);
    },
  },
});

afterAll(() => {
  server.stop(true);
  cutter.stop(true);
  fs.rmSync(dir, { recursive: true, force: true });
});

const client = new AdminClient(socket);

async function cliError(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CliError);
  return (error as Error).message;
}

test("get returns the JSON answer", async () => {
  expect(await client.get<{ services: { name: string }[] }>("/services")).toEqual({ services: [{ name: "web" }] });
  expect(received.at(-1)).toEqual({ method: "GET", path: "/services", type: null, body: "" });
});

test("get: the server's error, or the status when the answer is not JSON", async () => {
  expect(await cliError(client.get("/refused"))).toBe("no service named nope");
  expect(await cliError(client.get("/html"))).toBe("unexpected answer from the server (HTTP 502)");
  expect(await cliError(client.get("/plain-error"))).toBe("HTTP 500");
});

test("command posts the body as JSON and relays progress lines, however the stream is cut", async () => {
  const lines: string[] = [];
  await client.command("/deploy", { service: "web", targets: ["a:1"] }, (line) => lines.push(line));
  expect(lines).toEqual(["Target a:1: adding", "Target a:1: healthy"]);
  expect(received.at(-1)).toEqual({ method: "POST", path: "/deploy", type: "application/json", body: '{"service":"web","targets":["a:1"]}' });
});

test("command: an error result fails with its message, after the progress", async () => {
  const lines: string[] = [];
  expect(await cliError(client.command("/failing", {}, (line) => lines.push(line)))).toBe("target a:1 failed to become healthy");
  expect(lines).toEqual(["checking"]);
});

test("command: a stream that ends without a result, or breaks off, is an error naming the socket", async () => {
  expect(await cliError(client.command("/no-result", {}, () => {}))).toBe(`parachute at ${socket} ended the command without a result`);
  const lines: string[] = [];
  expect(await cliError(new AdminClient(cutSocket).command("/deploy", {}, (line) => lines.push(line)))).toBe(
    `lost the connection to parachute at ${cutSocket} before the command finished`,
  );
  expect(lines).toEqual(["checking"]);
});

test("command: a plain JSON answer is a result too", async () => {
  await client.command("/json-ok", {}, () => {});
  expect(await cliError(client.command("/json-error", {}, () => {}))).toBe("--target: at least one target is required");
  expect(await cliError(client.command("/html", {}, () => {}))).toBe("unexpected answer from the server (HTTP 502)");
});

test("no server on the socket: say how to start one", async () => {
  const missing = path.join(dir, "none.sock");
  const message = `cannot reach parachute at ${missing}: is "parachute run" running?`;
  expect(await cliError(new AdminClient(missing).get("/services"))).toBe(message);
  expect(await cliError(new AdminClient(missing).command("/deploy", {}))).toBe(message);
});
