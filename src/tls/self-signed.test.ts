import { expect, test } from "bun:test";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { alpnChallengeCertificate, selfSignedCertificate } from "./self-signed.ts";

test("a self-signed certificate that parses, verifies with its own key, and matches its private key", () => {
  const { cert, key } = selfSignedCertificate("parachute default certificate", 3650);
  const x509 = new X509Certificate(cert);
  expect(x509.subject).toBe("CN=parachute default certificate");
  expect(x509.issuer).toBe(x509.subject);
  expect(x509.verify(x509.publicKey)).toBe(true);
  expect(x509.checkPrivateKey(createPrivateKey(key))).toBe(true);
  const days = (Date.parse(x509.validTo) - Date.parse(x509.validFrom)) / 86_400_000;
  expect(Math.round(days)).toBe(3650);
});

test("each certificate has its own key and serial number", () => {
  const a = new X509Certificate(selfSignedCertificate("a", 1).cert);
  const b = new X509Certificate(selfSignedCertificate("a", 1).cert);
  expect(a.serialNumber).not.toBe(b.serialNumber);
  expect(a.publicKey.export({ type: "spki", format: "der" }).equals(b.publicKey.export({ type: "spki", format: "der" }))).toBe(false);
});

test("every serial number is a valid DER INTEGER (a random one starting 0x00 is not minimal and fails to parse)", () => {
  // About 1 random serial in 256 had that form; 2,000 certificates meet one with a probability above 99.9%.
  const serials = new Set<string>();
  for (let i = 0; i < 2000; i++) serials.add(new X509Certificate(selfSignedCertificate("a", 1).cert).serialNumber);
  expect(serials.size).toBe(2000);
});

test("a TLS-ALPN-01 challenge certificate names its host and carries the key authorization's digest (RFC 8737 §3), as acme-client checks it", async () => {
  const { cert, key } = alpnChallengeCertificate("app.example.com", "token.thumbprint");
  const x509 = new X509Certificate(cert);
  expect(x509.subjectAltName).toBe("DNS:app.example.com");
  expect(x509.verify(x509.publicKey)).toBe(true);
  expect(x509.checkPrivateKey(createPrivateKey(key))).toBe(true);
  const acme = await import("acme-client");
  expect(acme.crypto.isAlpnCertificateAuthorizationValid(cert, "token.thumbprint")).toBe(true);
  expect(acme.crypto.isAlpnCertificateAuthorizationValid(cert, "token.other")).toBe(false);
  // BoringSSL loads it (it refuses acme-client's own with an ECDSA key).
  expect(() => createSecureContext({ cert, key })).not.toThrow();
});
