// The certificate store: one certificate per host, from ACME or from the
// operator's own files, cached on disk under <state-dir>/certs (0600), and
// the SNI entries the HTTPS listener is built from.
import { X509Certificate, createPrivateKey } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as x509 from "@peculiar/x509";

export interface Certificate {
  cert: string;
  key: string;
  notAfter: Date;
  source: "acme" | "custom";
}

export class CertificateError extends Error {}

/** Does the certificate cover this host? A wildcard host needs a wildcard certificate. */
function covers(certificate: X509Certificate, host: string): boolean {
  if (host.startsWith("*.")) return certificate.checkHost(`parachute-check.${host.slice(2)}`) !== undefined;
  return certificate.checkHost(host) !== undefined;
}

/**
 * Loads and validates a custom certificate at deploy time: readable, the key
 * matches, not expired, and it covers every host. Any problem is a
 * CertificateError naming the file or host, and the deploy changes nothing.
 */
export function loadCustomCertificate(certPath: string, keyPath: string, hosts: string[]): Certificate {
  const read = (file: string, what: string) => {
    try {
      return fs.readFileSync(file, "utf8");
    } catch (error) {
      throw new CertificateError(`cannot read ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  };
  const certPem = read(certPath, "certificate");
  const keyPem = read(keyPath, "private key");
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certPem);
  } catch {
    throw new CertificateError(`${certPath} is not a PEM certificate`);
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    throw new CertificateError(`${keyPath} is not a PEM private key`);
  }
  if (!certificate.checkPrivateKey(key)) throw new CertificateError(`private key ${keyPath} does not match certificate ${certPath}`);
  const notAfter = new Date(certificate.validTo);
  if (notAfter.getTime() <= Date.now()) throw new CertificateError(`certificate ${certPath} expired on ${notAfter.toISOString()}`);
  if (new Date(certificate.validFrom).getTime() > Date.now()) throw new CertificateError(`certificate ${certPath} is not valid before ${certificate.validFrom}`);
  for (const host of hosts) {
    if (!covers(certificate, host)) throw new CertificateError(`certificate ${certPath} does not cover host ${host}`);
  }
  return { cert: certPem, key: keyPem, notAfter, source: "custom" };
}

export function certificateExpiry(certPem: string): Date {
  return new Date(new X509Certificate(certPem).validTo);
}

/**
 * A self-signed certificate for names no service has: Bun.serve hands the
 * first SNI entry to unknown names, and this way that is never a real site's
 * certificate (clients fail verification cleanly) and the HTTPS port is held
 * from the start.
 */
export async function fallbackCertificate(): Promise<{ cert: string; key: string }> {
  x509.cryptoProvider.set(crypto);
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Date.now().toString(16),
    name: "CN=parachute default certificate",
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 10 * 365 * 86_400_000),
    keys,
    signingAlgorithm: algorithm,
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { cert: cert.toString("pem"), key: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") };
}

/** ACME certificates cached on disk, one pair of files per host. */
export class CertificateCache {
  constructor(readonly dir: string) {}

  private files(host: string) {
    const safe = host.replace(/[^a-z0-9.-]/gi, "_");
    return { cert: path.join(this.dir, `${safe}.crt`), key: path.join(this.dir, `${safe}.key`) };
  }

  ensureDir() {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  load(host: string): Certificate | undefined {
    const files = this.files(host);
    try {
      const cert = fs.readFileSync(files.cert, "utf8");
      const key = fs.readFileSync(files.key, "utf8");
      return { cert, key, notAfter: certificateExpiry(cert), source: "acme" };
    } catch {
      return undefined;
    }
  }

  save(host: string, cert: string, key: string) {
    this.ensureDir();
    const files = this.files(host);
    writePrivate(files.key, key);
    writePrivate(files.cert, cert);
  }
}

/** Writes a file readable by the owner only, atomically. */
export function writePrivate(file: string, content: string) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  fs.renameSync(tmp, file);
}
