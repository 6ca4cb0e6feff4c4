// Parses the head of a target's HTTP/1.x response (RFC 9112 §4, §6.3) and
// decides how its body is delimited, so that the connection can be reused
// once the body has been relayed.
import type { Fields } from "./fields.ts";
import { readFieldLines } from "./field-lines.ts";

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

/** Statuses and methods whose responses never have a body (RFC 9110 §6.4.1). */
export function bodiless(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/** Fields a response may have at most: as many as a request. */
const MAX_FIELDS = 256;
const NO_TOKENS: string[] = [];

/** Parses `head` (latin1 text up to, not including, the blank line); undefined when it is not a valid response head. */
export function parseResponseHead(head: string, method: string): ResponseHead | undefined {
  let lineEnd = head.indexOf("\r\n");
  if (lineEnd === -1) lineEnd = head.length;
  // `HTTP/1.x NNN reason`: the reason may be empty, with or without its space.
  if (lineEnd < 12 || !head.startsWith("HTTP/1.") || head.charCodeAt(8) !== 32) return undefined;
  const minor = head.charCodeAt(7);
  const status = Number(head.slice(9, 12));
  if ((minor !== 48 && minor !== 49) || !Number.isInteger(status) || status < 100 || (lineEnd > 12 && head.charCodeAt(12) !== 32)) return undefined;
  const reason = lineEnd > 13 ? head.slice(13, lineEnd) : "";
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(reason)) return undefined;
  const read = readFieldLines(head, lineEnd + 2, MAX_FIELDS);
  if ("malformed" in read) return undefined;
  const fields = read.fields;
  const connection = fields.has("connection") ? fields.tokens("connection") : NO_TOKENS;
  let keepAlive = minor === 49 ? !connection.includes("close") : connection.includes("keep-alive");
  const body = framing(fields, method, status);
  if (body === undefined) return undefined;
  if (body.kind === "close") keepAlive = false;
  return { status, reason, fields, body, keepAlive };
}

function framing(fields: Fields, method: string, status: number): ResponseFraming | undefined {
  // No Content-Length on a 1xx or 204 (RFC 9110 §8.6).
  if (status === 204 || status < 200) fields.delete("content-length");
  if (bodiless(method, status)) return { kind: "none" };
  const codings = fields.has("transfer-encoding") ? fields.tokens("transfer-encoding") : NO_TOKENS;
  if (codings.length) {
    // Transfer-Encoding overrides Content-Length, which must not go on with it (RFC 9112 §6.3 item 3).
    fields.delete("content-length");
    // Another coding (gzip, chunked) could not be passed on to a client that
    // did not ask for it, nor undone here: not a response to relay.
    if (codings.some((coding) => coding !== "chunked") || codings.length > 1) return undefined;
    return { kind: "chunked" };
  }
  const lengths = fields.getAll("content-length");
  if (lengths.length === 0) return { kind: "close" };
  const values = new Set(lengths.flatMap((v) => v.split(",").map((s) => s.trim())));
  if (values.size !== 1) return undefined;
  const [text] = values as unknown as [string];
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) return undefined;
  if (lengths.length > 1 || lengths[0] !== text) fields.set("content-length", text);
  return Number(text) === 0 ? { kind: "none" } : { kind: "length", length: Number(text) };
}
