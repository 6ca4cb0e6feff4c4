// Address ranges in CIDR notation (RFC 4632; RFC 4291 §2.3 for IPv6), for
// the peers trusted to send a PROXY protocol header (README "PROXY
// protocol"). An IPv4 range also matches the IPv4-mapped IPv6 form of its
// addresses, which is how a dual-stack listener sees IPv4 peers.
import { isIP } from "node:net";
import * as v from "valibot";
import { parsed, ValueError } from "../values.ts";

export interface Cidr {
  /** 4 or 16 bytes, host bits cleared. */
  bytes: Uint8Array;
  prefix: number;
  /** As the user wrote it, for logs. */
  text: string;
}

/** An address's bytes (4 for IPv4, 16 for IPv6), IPv4-mapped IPv6 as IPv4; undefined when it is none. */
export function addressBytes(address: string): Uint8Array | undefined {
  const plain = address.replace(/%.*$/, "");
  const family = isIP(plain);
  if (family === 4) return new Uint8Array(plain.split(".").map(Number));
  if (family !== 6) return undefined;
  const bytes = ipv6Bytes(plain);
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? bytes.slice(12) : bytes;
}

/** The 16 bytes of a valid IPv6 literal (`::` expanded, a dotted IPv4 tail included). */
function ipv6Bytes(address: string): Uint8Array {
  let text = address;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".", lastColon)) {
    tail.push(...text.slice(lastColon + 1).split(".").map(Number));
    text = text.slice(0, lastColon + 1) + "0:0";
  }
  const [head, rest] = text.includes("::") ? text.split("::") : [text, undefined];
  const groups = (s: string | undefined) => (s ? s.split(":").map((g) => parseInt(g, 16)) : []);
  const left = groups(head);
  const right = groups(rest);
  const all = rest === undefined ? left : [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  });
  if (tail.length) bytes.set(tail, 12);
  return bytes;
}

/** `10.0.0.0/8`, `2001:db8::/32`, or one address (`/32` or `/128`). Host bits are ignored, as nginx's `set_real_ip_from` does. */
export function parseCidr(input: string): Cidr {
  const text = input.trim();
  const bad = (why: string) => new ValueError(`invalid CIDR "${input}" (${why})`);
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const bytes = addressBytes(address);
  // An IPv4-mapped range is written as IPv6 and stays one (its prefix counts 128 bits).
  if (!bytes || (isIP(address) === 6 && bytes.length === 4)) throw bad("expected an IPv4 or IPv6 address, optionally /prefix");
  const bits = bytes.length * 8;
  const prefixText = slash < 0 ? String(bits) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) throw bad(`prefix must be 0-${bits}`);
  const prefix = Number(prefixText);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return { bytes, prefix, text };
}

/** Whether `address` (as a socket reports it) is in `range`. */
export function cidrContains(range: Cidr, address: string): boolean {
  const bytes = addressBytes(address);
  if (!bytes || bytes.length !== range.bytes.length) return false;
  const whole = range.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== range.bytes[i]) return false;
  const rest = range.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole]! & mask) === range.bytes[whole];
}

/** A CIDR as a flag, an environment variable or JSON gives it: checked, kept as text (workers get it in JSON). */
export const cidrSchema = parsed(v.string("expected a CIDR string"), (input) => parseCidr(input).text);
