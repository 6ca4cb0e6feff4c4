// Parses an HTTP/1.x request head (RFC 9112 §2-§7) strictly: anything a
// smuggling attack or a confused intermediary could read two ways is refused
// before a target is contacted. What it returns is all the listener needs to
// frame the body and decide about the connection.
import type { Fields } from "./fields.ts";
import { readFieldLines } from "./field-lines.ts";

export type BodyFraming = { kind: "none" } | { kind: "length"; length: number } | { kind: "chunked" };

export interface RequestHead {
  method: string;
  /** The request-target exactly as sent. */
  target: string;
  version: "HTTP/1.0" | "HTTP/1.1";
  fields: Fields;
  body: BodyFraming;
  /** The client may send another request on this connection after this one. */
  keepAlive: boolean;
  expectContinue: boolean;
  /** The protocol asked for in `Upgrade` when `Connection` names it (lower case), e.g. "websocket". */
  upgrade: string | undefined;
}

export interface HeadError {
  status: 400 | 414 | 431 | 501 | 505;
  reason: string;
}

/** Limits on a request head; past them the answer is 431 (414 for a request line over its own limit). */
export const MAX_HEAD_BYTES = 64 * 1024;
export const MAX_REQUEST_LINE = 16 * 1024;
export const MAX_FIELDS = 256;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_TARGET = /^[\x21-\x7e\x80-\xff]+$/;
const DIGITS = /^\d+$/;

function fail(status: HeadError["status"], reason: string): HeadError {
  return { status, reason };
}

/**
 * Parses `head`: the bytes of a request head as latin1 text (one char per
 * byte), up to but not including the blank line that ends it.
 */
export function parseRequestHead(head: string): RequestHead | HeadError {
  let lineEnd = head.indexOf("\r\n");
  if (lineEnd === -1) lineEnd = head.length;
  const sp1 = head.indexOf(" ");
  const sp2 = sp1 === -1 ? -1 : head.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || sp2 >= lineEnd || head.lastIndexOf(" ", lineEnd - 1) !== sp2) return fail(400, "malformed request line");
  const method = head.slice(0, sp1);
  const target = head.slice(sp1 + 1, sp2);
  const versionText = head.slice(sp2 + 1, lineEnd);
  if (!TOKEN.test(method)) return fail(400, "malformed method");
  if (!REQUEST_TARGET.test(target)) return fail(400, "malformed request target");
  if (versionText !== "HTTP/1.1" && versionText !== "HTTP/1.0") {
    return /^HTTP\/\d\.\d$/.test(versionText) ? fail(505, `${versionText} is not supported`) : fail(400, "malformed HTTP version");
  }
  const version = versionText as RequestHead["version"];

  const read = readFieldLines(head, lineEnd + 2, MAX_FIELDS);
  if ("malformed" in read) return read.tooMany ? fail(431, "too many header fields") : fail(400, "malformed header field");
  const fields = read.fields;

  const hosts = fields.getAll("host");
  if (hosts.length > 1) return fail(400, "more than one Host header");
  // HTTP/1.1 requires a Host, except that an absolute-form target carries its own (RFC 9112 §3.2).
  if (hosts.length === 0 && version === "HTTP/1.1" && !/^https?:\/\//i.test(target)) return fail(400, "missing Host header");

  const body = framing(fields, version);
  if ("status" in body) return body;
  const connection = fields.has("connection") ? fields.tokens("connection") : NO_TOKENS;
  const keepAlive = version === "HTTP/1.1" && !connection.includes("close");
  const expect = fields.get("expect")?.toLowerCase();
  const upgrade = connection.includes("upgrade") ? fields.get("upgrade")?.trim().toLowerCase() : undefined;
  return { method, target, version, fields, body, keepAlive, expectContinue: expect === "100-continue", upgrade };
}

const NO_TOKENS: string[] = [];

/** How the body is delimited (RFC 9112 §6.3). */
function framing(fields: Fields, version: RequestHead["version"]): BodyFraming | HeadError {
  const codings = fields.has("transfer-encoding") ? fields.tokens("transfer-encoding") : NO_TOKENS;
  const lengths = fields.has("content-length") ? fields.getAll("content-length") : NO_TOKENS;
  if (codings.length > 0) {
    if (lengths.length > 0) return fail(400, "both Transfer-Encoding and Content-Length");
    if (version === "HTTP/1.0") return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (codings.at(-1) !== "chunked") return fail(400, `Transfer-Encoding "${fields.getAll("transfer-encoding").join(", ")}" does not end in chunked`);
    // chunked may be applied once only (RFC 9112 §7.1); other codings before it are not supported.
    if (codings.indexOf("chunked") !== codings.length - 1) return fail(400, "chunked applied more than once");
    if (codings.length > 1) return fail(501, `Transfer-Encoding "${fields.getAll("transfer-encoding").join(", ")}" is not supported`);
    return { kind: "chunked" };
  }
  if (lengths.length === 0) return { kind: "none" };
  // Repeated identical values (`5, 5`, or two lines) are one length (RFC 9110 §8.6).
  const values = new Set(lengths.flatMap((v) => v.split(",").map((s) => s.trim())));
  if (values.size !== 1) return fail(400, "conflicting Content-Length values");
  const [text] = values as unknown as [string];
  if (!DIGITS.test(text)) return fail(400, `invalid Content-Length "${text}"`);
  const length = Number(text);
  if (!Number.isSafeInteger(length)) return fail(400, `invalid Content-Length "${text}"`);
  if (lengths.length > 1 || lengths[0] !== text) fields.set("content-length", text);
  return length === 0 ? { kind: "none" } : { kind: "length", length };
}
