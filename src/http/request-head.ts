// Parses an HTTP/1.x request head (RFC 9112 §2-§7) strictly: anything a
// smuggling attack or a confused intermediary could read two ways is refused
// before a target is contacted. What it returns is all the listener needs to
// frame the body and decide about the connection.
import { Fields } from "./fields.ts";

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
  status: 400 | 431 | 501 | 505;
  reason: string;
}

/** Limits on a request head; past them the answer is 431. */
export const MAX_HEAD_BYTES = 64 * 1024;
export const MAX_FIELDS = 256;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible characters, spaces, tabs and obs-text; no CR, LF, NUL or other controls. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
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
  const lines = head.split("\r\n");
  const requestLine = lines[0]!;
  const sp1 = requestLine.indexOf(" ");
  const sp2 = requestLine.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || requestLine.indexOf(" ", sp2 + 1) !== -1) return fail(400, "malformed request line");
  const method = requestLine.slice(0, sp1);
  const target = requestLine.slice(sp1 + 1, sp2);
  const versionText = requestLine.slice(sp2 + 1);
  if (!TOKEN.test(method)) return fail(400, "malformed method");
  if (!REQUEST_TARGET.test(target)) return fail(400, "malformed request target");
  if (!/^HTTP\/\d\.\d$/.test(versionText)) return fail(400, "malformed HTTP version");
  if (versionText !== "HTTP/1.1" && versionText !== "HTTP/1.0") return fail(505, `${versionText} is not supported`);
  const version = versionText as RequestHead["version"];

  if (lines.length - 1 > MAX_FIELDS) return fail(431, "too many header fields");
  const fields = new Fields();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    // No whitespace before the colon (RFC 9112 §5.1) and no obs-fold (§5.2).
    if (colon <= 0) return fail(400, "malformed header field");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return fail(400, "malformed header field name");
    const value = line.slice(colon + 1).trim();
    if (!FIELD_VALUE.test(value)) return fail(400, "malformed header field value");
    fields.append(name, value);
  }

  const hosts = fields.getAll("host");
  if (hosts.length > 1) return fail(400, "more than one Host header");
  // HTTP/1.1 requires a Host, except that an absolute-form target carries its own (RFC 9112 §3.2).
  if (hosts.length === 0 && version === "HTTP/1.1" && !/^https?:\/\//i.test(target)) return fail(400, "missing Host header");

  const body = framing(fields, version);
  if ("status" in body) return body;
  const connection = fields.tokens("connection");
  const keepAlive = version === "HTTP/1.1" && !connection.includes("close");
  const expect = fields.get("expect")?.toLowerCase();
  const upgrade = connection.includes("upgrade") ? fields.get("upgrade")?.trim().toLowerCase() : undefined;
  return { method, target, version, fields, body, keepAlive, expectContinue: expect === "100-continue", upgrade };
}

/** How the body is delimited (RFC 9112 §6.3). */
function framing(fields: Fields, version: RequestHead["version"]): BodyFraming | HeadError {
  const codings = fields.tokens("transfer-encoding");
  const lengths = fields.getAll("content-length");
  if (codings.length > 0) {
    if (lengths.length > 0) return fail(400, "both Transfer-Encoding and Content-Length");
    if (version === "HTTP/1.0") return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (codings.at(-1) !== "chunked") return fail(400, `Transfer-Encoding "${fields.getAll("transfer-encoding").join(", ")}" does not end in chunked`);
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
