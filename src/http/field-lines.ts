// The field section of an HTTP/1.x head (RFC 9112 §5), shared by the
// request and response parsers: one regular expression checks every line
// (a token name, a colon with nothing before it, a value of visible
// characters, spaces, tabs and obs-text; so no obs-fold, no bare CR or LF, no
// NUL), then one pass collects the fields.
import { Fields } from "./fields.ts";

const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const VALUE = "[\\t\\x20-\\x7e\\x80-\\xff]*";
const FIELD_LINES = new RegExp(`^${TOKEN}:${VALUE}(?:\\r\\n${TOKEN}:${VALUE})*$`);

/** A value without the optional whitespace around it (spaces and tabs only). */
function trimOws(text: string, start: number, end: number): string {
  while (start < end && (text.charCodeAt(start) === 32 || text.charCodeAt(start) === 9)) start++;
  while (end > start && (text.charCodeAt(end - 1) === 32 || text.charCodeAt(end - 1) === 9)) end--;
  return text.slice(start, end);
}

/**
 * Reads the field lines of `head` from `start` (just after the start line's
 * CRLF) to its end. Undefined when a line is malformed or there are more
 * than `maxFields`; `tooMany` tells the two apart.
 */
export function readFieldLines(head: string, start: number, maxFields: number): { fields: Fields } | { malformed: true; tooMany: boolean } {
  const fields = new Fields();
  if (start >= head.length) return { fields };
  const block = start === 0 ? head : head.slice(start);
  if (!FIELD_LINES.test(block)) return { malformed: true, tooMany: false };
  let pos = 0;
  const n = block.length;
  while (pos < n) {
    let end = block.indexOf("\r\n", pos);
    if (end === -1) end = n;
    const colon = block.indexOf(":", pos);
    if (fields.size === maxFields) return { malformed: true, tooMany: true };
    fields.append(block.slice(pos, colon), trimOws(block, colon + 1, end));
    pos = end + 2;
  }
  return { fields };
}
