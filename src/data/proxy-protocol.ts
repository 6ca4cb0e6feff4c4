// The PROXY protocol header (HAProxy's "The PROXY protocol", versions 1 and
// 2: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) that a TCP
// load balancer sends before the client's bytes, to say whom the connection
// is really from. Pure: bytes in, a verdict out; the listener decides what to
// do with it (README "PROXY protocol").
import { isIP } from "node:net";

/** The longest version 1 line, CRLF included (spec §2.1). */
export const MAX_V1_BYTES = 107;
/** Version 2's fixed part: signature, version/command, family/protocol, length (spec §2.2). */
const V2_FIXED_BYTES = 16;
const V2_SIGNATURE = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = new TextEncoder().encode("PROXY ");

export type ProxyHeader =
  /** More bytes are needed to decide. */
  | { kind: "incomplete" }
  | { kind: "invalid"; reason: string }
  /**
   * A whole header of `length` bytes; the client's bytes follow it.
   * `source` is the client's address, or undefined when the header names
   * none (v2 LOCAL, UNSPEC or UNIX family; v1 UNKNOWN): the connection's own
   * peer is then the client (spec §2.1, §2.2).
   */
  | { kind: "header"; length: number; source: string | undefined };

const INCOMPLETE: ProxyHeader = { kind: "incomplete" };
const invalid = (reason: string): ProxyHeader => ({ kind: "invalid", reason });

/** Whether `bytes` starts as much of `prefix` as it has. */
function startsAs(bytes: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

/** Reads the header at the start of `bytes` (everything received so far). */
export function parseProxyHeader(bytes: Uint8Array): ProxyHeader {
  if (bytes.length === 0) return INCOMPLETE;
  if (startsAs(bytes, V2_SIGNATURE)) return parseV2(bytes);
  if (startsAs(bytes, V1_PREFIX)) return parseV1(bytes);
  return invalid("no PROXY protocol signature");
}

const PORT = /^(0|[1-9]\d{0,4})$/;

function parseV1(bytes: Uint8Array): ProxyHeader {
  // The line ends within 107 bytes, or it is not one.
  const end = bytes.subarray(0, MAX_V1_BYTES).indexOf(0x0a);
  if (end < 0) return bytes.length >= MAX_V1_BYTES ? invalid("version 1 line longer than 107 bytes") : INCOMPLETE;
  if (bytes[end - 1] !== 0x0d) return invalid("version 1 line not ended by CRLF");
  const line = new TextDecoder("latin1").decode(bytes.subarray(0, end - 1));
  const fields = line.split(" ");
  const length = end + 1;
  // UNKNOWN: the rest of the line is to be ignored (spec §2.1).
  if (fields[1] === "UNKNOWN") return { kind: "header", length, source: undefined };
  if (fields[1] !== "TCP4" && fields[1] !== "TCP6") return invalid(`unknown version 1 protocol "${fields[1]}"`);
  if (fields.length !== 6) return invalid("version 1 line needs 4 fields after the protocol");
  const [, protocol, source, destination, sourcePort, destinationPort] = fields as [string, string, string, string, string, string];
  const family = protocol === "TCP4" ? 4 : 6;
  if (isIP(source) !== family || isIP(destination) !== family) return invalid(`version 1 address not ${protocol}`);
  for (const port of [sourcePort, destinationPort]) {
    if (!PORT.test(port) || Number(port) > 65535) return invalid(`invalid version 1 port "${port}"`);
  }
  return { kind: "header", length, source };
}

/** Address bytes a family needs at least (spec §2.2: the length may be larger, TLVs follow). */
const ADDRESS_BYTES: Record<number, number> = { 0x1: 12, 0x2: 36, 0x3: 216 };

function parseV2(bytes: Uint8Array): ProxyHeader {
  if (bytes.length < V2_FIXED_BYTES) return INCOMPLETE;
  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) return invalid(`unsupported version ${versionCommand >> 4}`);
  const command = versionCommand & 0x0f;
  if (command > 1) return invalid(`unknown command ${command}`);
  const family = bytes[13]! >> 4;
  const protocol = bytes[13]! & 0x0f;
  if (family > 3 || protocol > 2) return invalid(`unknown address family/protocol 0x${bytes[13]!.toString(16)}`);
  const addressLength = (bytes[14]! << 8) | bytes[15]!;
  const length = V2_FIXED_BYTES + addressLength;
  if (command === 1 && family !== 0 && addressLength < ADDRESS_BYTES[family]!) return invalid("address block too short for its family");
  if (bytes.length < length) return INCOMPLETE;
  // LOCAL (a health check of the balancer itself) and UNSPEC carry no
  // client; nor does a UNIX socket address. TLVs are skipped.
  if (command === 0 || (family !== 1 && family !== 2)) return { kind: "header", length, source: undefined };
  const source = family === 1 ? bytes.subarray(16, 20).join(".") : ipv6Text(bytes.subarray(16, 32));
  return { kind: "header", length, source };
}

/** The textual form of 16 address bytes; an IPv4-mapped one is its IPv4 address, as for a peer (normalizeClientIp). */
function ipv6Text(raw: Uint8Array): string {
  if (raw.subarray(0, 10).every((b) => b === 0) && raw[10] === 0xff && raw[11] === 0xff) return raw.subarray(12).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((raw[i]! << 8) | raw[i + 1]!).toString(16));
  // new URL canonicalises (RFC 5952: longest zero run compressed, IPv4-mapped kept as such).
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}
