// Self-signed certificates, ECDSA P-256: the fallback one, for handshakes
// that name no service (or no name at all), which never verifies, so no real
// site's certificate is ever shown to a stranger; and the TLS-ALPN-01
// challenge ones (RFC 8737 §3). Built with node:crypto and a few lines of
// DER (RFC 5280 §4.1) rather than an X.509 library: the library alone added
// about 19 MB to the resident memory of every proxy with HTTPS on. (acme-client's
// own `createAlpnCertificate` marks its certificate as a CA's, keyCertSign
// without digitalSignature, which BoringSSL refuses to load with an ECDSA key:
// KEY_USAGE_BIT_INCORRECT.)
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";

function length(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

/** One DER element: tag, length, content. */
function der(tag: number, ...content: (Uint8Array | number[])[]): Uint8Array {
  const body = Buffer.concat(content.map((c) => Uint8Array.from(c)));
  return Buffer.concat([Uint8Array.from([tag, ...length(body.length)]), body]);
}

const sequence = (...items: Uint8Array[]) => der(0x30, ...items);
const oid = (encoded: number[]) => der(0x06, encoded);
/** ecdsa-with-SHA256 (1.2.840.10045.4.3.2). */
const ECDSA_SHA256 = sequence(oid([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
/** commonName (2.5.4.3). */
const COMMON_NAME = oid([0x55, 0x04, 0x03]);

function name(commonName: string): Uint8Array {
  return sequence(der(0x31, sequence(COMMON_NAME, der(0x0c, Buffer.from(commonName, "utf8")))));
}

/** GeneralizedTime, which RFC 5280 allows for any date (UTCTime stops at 2049). */
function time(date: Date): Uint8Array {
  const text = date.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
  return der(0x18, Buffer.from(text, "ascii"));
}

function pem(label: string, bytes: Uint8Array): string {
  const base64 = Buffer.from(bytes).toString("base64").replace(/.{64}/g, "$&\n");
  return `-----BEGIN ${label}-----\n${base64.replace(/\n$/, "")}\n-----END ${label}-----\n`;
}

/** subjectAltName (2.5.29.17) and id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31, RFC 8737 §6.1). */
const SUBJECT_ALT_NAME = oid([0x55, 0x1d, 0x11]);
const ACME_IDENTIFIER = oid([0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f]);
const CRITICAL = der(0x01, [0xff]);

/**
 * The TLS-ALPN-01 challenge certificate for `host` (RFC 8737 §3): the host as
 * its only dNSName, and the critical acmeIdentifier extension holding the
 * SHA-256 digest of the key authorization.
 */
export function alpnChallengeCertificate(host: string, keyAuthorization: string): { cert: string; key: string } {
  const digest = createHash("sha256").update(keyAuthorization).digest();
  const altName = sequence(der(0x82, Buffer.from(host, "ascii"))); // dNSName [2] IA5String
  return selfSignedCertificate(host, 7, [
    sequence(SUBJECT_ALT_NAME, der(0x04, altName)),
    sequence(ACME_IDENTIFIER, CRITICAL, der(0x04, der(0x04, digest))),
  ]);
}

/** A new self-signed certificate, with these X.509 v3 extensions if any, and its private key, as PEM. */
export function selfSignedCertificate(commonName: string, validDays: number, extensions: Uint8Array[] = []): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const serial = randomBytes(16);
  // DER wants a positive INTEGER in the fewest bytes (X.690 §8.3.2): the top
  // bit clear, and a first byte that is not zero. 0x40 keeps all 16 bytes.
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const now = Date.now();
  const tbs = sequence(
    der(0xa0, der(0x02, [2])), // version v3
    der(0x02, serial),
    ECDSA_SHA256,
    name(commonName),
    sequence(time(new Date(now - 60_000)), time(new Date(now + validDays * 86_400_000))),
    name(commonName),
    publicKey.export({ type: "spki", format: "der" }),
    ...(extensions.length ? [der(0xa3, sequence(...extensions))] : []),
  );
  const signature = sign("sha256", tbs, privateKey);
  const certificate = sequence(tbs, ECDSA_SHA256, der(0x03, [0], signature));
  return { cert: pem("CERTIFICATE", certificate), key: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}
