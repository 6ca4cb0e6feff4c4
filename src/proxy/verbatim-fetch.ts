// Bun's fetch collapses a leading `//` in the request target (`GET //a//b`
// goes out as `GET /a//b`), and SPEC §7 passes the path verbatim. Those rare
// requests go through node:http's client instead, which writes the path as
// given; everything else keeps the faster fetch. The answer is turned into a
// Response (responseFrom, also used for an app's refused WebSocket upgrade)
// so it is relayed the same way.
import http from "node:http";
import { Readable } from "node:stream";

/** Whether fetch would rewrite this request target. */
export function needsVerbatimFetch(pathAndQuery: string): boolean {
  return pathAndQuery.startsWith("//");
}

interface VerbatimInit {
  method: string;
  headers: Headers;
  body: Blob | ReadableStream<Uint8Array> | null;
  signal: AbortSignal;
}

/** Statuses whose responses never carry a body (the Response constructor refuses one). */
function bodiless(status: number): boolean {
  return status === 204 || status === 205 || status === 304;
}

/** A node:http response as a web Response: headers in order (repeated ones kept apart), body streamed. */
export function responseFrom(res: http.IncomingMessage): Response {
  const headers = new Headers();
  const raw = res.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  const status = res.statusCode ?? 502;
  if (bodiless(status)) res.resume();
  const body = bodiless(status) ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
  return new Response(body, { status, statusText: res.statusMessage, headers });
}

export function verbatimFetch(origin: string, pathAndQuery: string, init: VerbatimInit): Promise<Response> {
  const url = new URL(origin);
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port,
        method: init.method,
        path: pathAndQuery,
        headers: Object.fromEntries(init.headers),
        signal: init.signal,
      },
      (res) => resolve(responseFrom(res)),
    );
    request.on("error", reject);
    if (!init.body) request.end();
    else if (init.body instanceof Blob) init.body.bytes().then((bytes) => request.end(bytes), reject);
    else Readable.fromWeb(init.body as import("node:stream/web").ReadableStream<Uint8Array>).on("error", (error) => request.destroy(error)).pipe(request);
  });
}
