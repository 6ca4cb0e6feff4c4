import { expect, test } from "bun:test";
import { parseClientHello } from "./client-hello.ts";

/** A minimal TLS 1.2-style ClientHello record with an SNI name and an ALPN list. */
function clientHello(serverName: string | undefined, alpn: string[]): Uint8Array {
  const u16 = (n: number) => [n >> 8, n & 0xff];
  const extensions: number[] = [];
  if (serverName !== undefined) {
    const name = [...Buffer.from(serverName)];
    const entry = [0, ...u16(name.length), ...name];
    extensions.push(...u16(0), ...u16(entry.length + 2), ...u16(entry.length), ...entry);
  }
  if (alpn.length) {
    const list = alpn.flatMap((p) => [p.length, ...Buffer.from(p)]);
    extensions.push(...u16(16), ...u16(list.length + 2), ...u16(list.length), ...list);
  }
  const body = [3, 3, ...new Array(32).fill(7), 0, ...u16(2), 0x13, 0x01, 1, 0, ...u16(extensions.length), ...extensions];
  const handshake = [1, 0, ...u16(body.length), ...body];
  return Uint8Array.from([0x16, 3, 1, ...u16(handshake.length), ...handshake]);
}

test("reads the SNI name (lower case) and whether ALPN offers h2", () => {
  expect(parseClientHello(clientHello("App.Example.com", ["h2", "http/1.1"]))).toEqual({ complete: true, serverName: "app.example.com", offersH2: true, offersAcmeTls: false });
  expect(parseClientHello(clientHello("a.test", ["http/1.1"]))).toEqual({ complete: true, serverName: "a.test", offersH2: false, offersAcmeTls: false });
  expect(parseClientHello(clientHello(undefined, []))).toEqual({ complete: true, serverName: undefined, offersH2: false, offersAcmeTls: false });
});

test("an ACME TLS-ALPN-01 validation offers acme-tls/1 (RFC 8737 §3); a near name is not it", () => {
  expect(parseClientHello(clientHello("a.test", ["acme-tls/1"]))).toEqual({ complete: true, serverName: "a.test", offersH2: false, offersAcmeTls: true });
  expect(parseClientHello(clientHello("a.test", ["acme-tls/2", "acme-tls/10"]))).toMatchObject({ offersAcmeTls: false });
});

test("a hello that has not fully arrived is incomplete", () => {
  const hello = clientHello("a.test", ["h2"]);
  expect(parseClientHello(hello.subarray(0, 3))).toEqual({ complete: false });
  expect(parseClientHello(hello.subarray(0, hello.length - 1))).toEqual({ complete: false });
});

test("something that is not a TLS handshake is complete with no name (the TLS server refuses it)", () => {
  expect(parseClientHello(Buffer.from("GET / HTTP/1.1\r\n\r\n"))).toEqual({ complete: true });
});
