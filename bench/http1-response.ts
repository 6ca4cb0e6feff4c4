// Just enough HTTP/1.1 response parsing for the TLS probe and the handshake
// client: status, headers, and whether the body has fully arrived.
export interface ParsedResponse {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  /** The whole body is here (by Content-Length or the last chunk); false means "read until close". */
  complete: boolean;
}

const HEADER_END = Buffer.from("\r\n\r\n");
const LAST_CHUNK = Buffer.from("0\r\n\r\n");

/** undefined until the header block has arrived. */
export function parseResponse(bytes: Buffer): ParsedResponse | undefined {
  const end = bytes.indexOf(HEADER_END);
  if (end < 0) return undefined;
  const [statusLine = "", ...lines] = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const body = bytes.subarray(end + HEADER_END.length);
  const length = headers.get("content-length");
  const chunked = headers.get("transfer-encoding")?.toLowerCase().includes("chunked");
  const complete = length !== undefined ? body.length >= Number(length) : chunked ? body.includes(LAST_CHUNK) : false;
  return { status, headers, body, complete };
}

/** The request both TLS tools send: one GET that asks the server to close afterwards. */
export function closingRequest(host: string, path: string): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: parachute-bench\r\nConnection: close\r\n\r\n`, "latin1");
}
