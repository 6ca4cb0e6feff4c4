import { afterAll, afterEach, beforeAll, expect, spyOn, test } from "bun:test";
import { Cancel, type ProxyRequest } from "../data/request.ts";
import { Fields } from "../http/fields.ts";
import { log } from "../log.ts";
import { metrics } from "../metrics.ts";
import { logRequest, startRequestLog } from "./request-log.ts";

// The logger is the output, not the thing under test: its lines are captured instead of written.
const lines: { msg: string; fields: Record<string, unknown> }[] = [];
let capture: ReturnType<typeof spyOn> | undefined;
beforeAll(() => {
  capture = spyOn(log, "infoLine").mockImplementation((msg: string, fieldsText: string) => {
    lines.push({ msg, fields: JSON.parse(`{${fieldsText}}`) });
  });
});
afterAll(() => capture?.mockRestore());
afterEach(() => void lines.splice(0));

function request(headers: [string, string][], more: Partial<ProxyRequest> = {}): ProxyRequest {
  const fields = new Fields();
  for (const [name, value] of headers) fields.append(name, value);
  return {
    method: "GET",
    path: "/api/x",
    query: "?q=1",
    hostHeader: fields.get("host") ?? "",
    headers: fields,
    proto: "HTTP/1.1",
    scheme: "http",
    remoteAddr: "10.0.0.9",
    body: null,
    websocket: false,
    started: performance.now(),
    gone: new Cancel(),
    ...more,
  };
}

test("startRequestLog: host normalised, request id and client address from the request", () => {
  const entry = startRequestLog(request([["Host", "App.Test:8080"], ["X-Request-ID", "abc"]]));
  expect(entry.host).toBe("app.test");
  expect(entry.requestId).toBe("abc");
  expect(entry.clientAddr).toBe("10.0.0.9");
  expect(entry.service).toBe("");
  expect(entry.target).toBe("");
  const bare = startRequestLog(request([]));
  expect(bare.host).toBe("");
  expect(bare.requestId).toBe("");
});

test("one Request line with every documented field", () => {
  const entry = { ...startRequestLog(request([["Host", "app.test"], ["User-Agent", "curl/8"], ["Content-Length", "12"]])), service: "web", target: "web-1:3000", requestId: "rid", clientAddr: "203.0.113.1" };
  logRequest(entry, { status: 201, bytes: 42 });
  expect(lines).toHaveLength(1);
  expect(lines[0]!.msg).toBe("Request");
  const { duration_ms, ...fields } = lines[0]!.fields;
  expect(fields).toEqual({
    service: "web",
    target: "web-1:3000",
    host: "app.test",
    method: "GET",
    path: "/api/x",
    query: "q=1",
    status: 201,
    request_id: "rid",
    client_addr: "203.0.113.1",
    remote_addr: "10.0.0.9",
    user_agent: "curl/8",
    req_content_length: 12,
    resp_content_length: 42,
    proto: "HTTP/1.1",
    scheme: "http",
  });
  expect(typeof duration_ms).toBe("number");
  expect(duration_ms as number).toBeGreaterThanOrEqual(0);
  expect(duration_ms as number).toBeLessThan(10_000);
});

test("the error, and the chosen request and response headers, are added (dashes as underscores)", () => {
  const entry = { ...startRequestLog(request([["Host", "h"], ["X-Tenant-Id", "t1"]])), logRequestHeaders: ["x-tenant-id", "x-missing"], logResponseHeaders: ["cache-control"] };
  const headers = new Fields();
  headers.append("Cache-Control", "no-store");
  logRequest(entry, { status: 504, bytes: 0, error: "target timeout", headers });
  const f = lines[0]!.fields;
  expect(f.error).toBe("target timeout");
  expect(f.req_x_tenant_id).toBe("t1");
  expect(f.req_x_missing).toBe("");
  expect(f.resp_cache_control).toBe("no-store");
});

test("values a client controls are escaped: the line stays one valid JSON object", () => {
  const nasty = 'a"b\\c\nd\u2028e\x01';
  const req = request([["Host", 'h"x'], ["User-Agent", nasty], ["X-Request-ID", nasty], ["Content-Length", "junk"]], { path: '/p"\n', query: "?x=\"y\"" });
  logRequest({ ...startRequestLog(req), service: "web", target: "t:1", logRequestHeaders: ["user-agent"] }, { status: 400, bytes: 0, error: nasty });
  const f = lines[0]!.fields;
  expect(f.host).toBe('h"x');
  expect(f.user_agent).toBe(nasty);
  expect(f.request_id).toBe(nasty);
  expect(f.path).toBe('/p"\n');
  expect(f.query).toBe('x="y"');
  expect(f.error).toBe(nasty);
  expect(f.req_user_agent).toBe(nasty);
  expect(f.req_content_length).toBe(0);
});

test("an unroutable request logs an empty path and no query", () => {
  logRequest(startRequestLog(request([], { method: "OPTIONS", path: undefined, query: "" })), { status: 400, bytes: 0 });
  expect(lines[0]!.fields.path).toBe("");
  expect(lines[0]!.fields.query).toBe("");
  expect(lines[0]!.fields.method).toBe("OPTIONS");
});

test("each logged request is counted in the metrics by service, method and status", () => {
  const series = () => metrics.requests.samples().find((s) => s.labels.service === "counted" && s.labels.method === "PUT" && s.labels.status === "418")?.value ?? 0;
  const before = series();
  const entry = { ...startRequestLog(request([], { method: "PUT" })), service: "counted" };
  logRequest(entry, { status: 418, bytes: 0 });
  logRequest(entry, { status: 418, bytes: 0 });
  expect(series()).toBe(before + 2);
});
