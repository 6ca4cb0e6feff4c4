// Reads what the TLS front needs from a ClientHello before any TLS server sees
// it: the SNI host name, whether the client offers HTTP/2 by ALPN, and
// whether it is an ACME TLS-ALPN-01 validation, which offers `acme-tls/1`
// (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1, RFC 8737 §3).

export type ClientHello = { complete: false } | { complete: true; serverName?: string; offersH2?: boolean; offersAcmeTls?: boolean };

const ACME_TLS = new TextEncoder().encode("acme-tls/1");

/** Parses the first TLS record of a connection; `complete: false` until the whole ClientHello has arrived. */
export function parseClientHello(data: Uint8Array): ClientHello {
  if (data.length < 5) return { complete: false };
  if (data[0] !== 0x16) return { complete: true }; // not a TLS handshake: let the TLS server refuse it
  const recordLength = (data[3]! << 8) | data[4]!;
  if (data.length < 5 + recordLength) return { complete: false };
  const hello = data.subarray(5, 5 + recordLength);
  const u16 = (i: number) => (hello[i]! << 8) | hello[i + 1]!;
  try {
    if (hello[0] !== 0x01) return { complete: true };
    let i = 4 + 2 + 32; // handshake header, client_version, random
    i += 1 + hello[i]!; // session id
    i += 2 + u16(i); // cipher suites
    i += 1 + hello[i]!; // compression methods
    const end = Math.min(i + 2 + u16(i), hello.length);
    i += 2;
    let serverName: string | undefined;
    let offersH2 = false;
    let offersAcmeTls = false;
    while (i + 4 <= end) {
      const type = u16(i);
      const length = u16(i + 2);
      i += 4;
      if (type === 0 && i + 5 <= end) {
        const nameLength = u16(i + 3);
        if (hello[i + 2] === 0 && i + 5 + nameLength <= end) {
          serverName = new TextDecoder().decode(hello.subarray(i + 5, i + 5 + nameLength)).toLowerCase();
        }
      } else if (type === 16 && i + 2 <= end) {
        // ALPN: a list of length-prefixed protocol names.
        const listEnd = Math.min(i + 2 + u16(i), end);
        for (let p = i + 2; p < listEnd; p += 1 + hello[p]!) {
          const n = hello[p]!;
          if (n === 2 && hello[p + 1] === 0x68 && hello[p + 2] === 0x32) offersH2 = true; // "h2"
          if (n === ACME_TLS.length && ACME_TLS.every((byte, k) => hello[p + 1 + k] === byte)) offersAcmeTls = true;
        }
      }
      i += length;
    }
    return { complete: true, serverName, offersH2, offersAcmeTls };
  } catch {
    // A malformed hello: the TLS server will refuse it.
  }
  return { complete: true };
}

