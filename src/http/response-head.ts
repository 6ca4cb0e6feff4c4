// Parses the head of a target's HTTP/1.x response (RFC 9112 §4, §6.3) and
// decides how its body is delimited, so that the connection can be reused
// once the body has been relayed.
import { Fields } from "./fields.ts";

export type ResponseFraming = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" } | { kind: "close" };

export interface ResponseHead {
  status: number;
  /** The reason phrase as the app sent it (may be empty). */
  reason: string;
  fields: Fields;
  body: ResponseFraming;
  /** The target keeps the connection open after this response. */
  keepAlive: boolean;
}

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/;

/** Statuses and methods whose responses never have a body (RFC 9110 §6.4.1). */
export function bodiless(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/** Parses `head` (latin1 text up to, not including, the blank line); undefined when it is not a valid response head. */
export function parseResponseHead(head: string, method: string): ResponseHead | undefined {
  const lines = head.split("\r\n");
  const match = STATUS_LINE.exec(lines[0]!);
  if (!match) return undefined;
  const minor = match[1]!;
  const status = Number(match[2]);
  const fields = new Fields();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0 || line.includes("\n") || line.includes("\r")) return undefined;
    fields.append(line.slice(0, colon).trimEnd(), line.slice(colon + 1).trim());
  }
  const connection = fields.tokens("connection");
  let keepAlive = minor === "1" ? !connection.includes("close") : connection.includes("keep-alive");
  const body = framing(fields, method, status);
  if (body === undefined) return undefined;
  if (body.kind === "close") keepAlive = false;
  return { status, reason: match[3] ?? "", fields, body, keepAlive };
}

function framing(fields: Fields, method: string, status: number): ResponseFraming | undefined {
  if (bodiless(method, status)) return { kind: "none" };
  const codings = fields.tokens("transfer-encoding");
  // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3).
  if (codings.length) return codings.at(-1) === "chunked" ? { kind: "chunked" } : { kind: "close" };
  const lengths = fields.getAll("content-length");
  if (lengths.length === 0) return { kind: "close" };
  const values = new Set(lengths.flatMap((v) => v.split(",").map((s) => s.trim())));
  if (values.size !== 1) return undefined;
  const [text] = values as unknown as [string];
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) return undefined;
  if (lengths.length > 1 || lengths[0] !== text) fields.set("content-length", text);
  return Number(text) === 0 ? { kind: "none" } : { kind: "length", length: Number(text) };
}
