// The certificate store: one certificate per host, from ACME or from the
// operator's own files; ACME ones cached on disk under <state-dir>/certs, or
// the directory `--tls-acme-cache-path` names (0600), per ACME directory.
import { X509Certificate, createPrivateKey, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { selfSignedCertificate } from "./self-signed.ts";

export interface Certificate {
  cert: string;
  key: string;
  notAfter: Date;
  source: "acme" | "custom";
  /** For ACME: the directory (CA) that issued it, when known. */
  directory?: string;
}

export class CertificateError extends Error {}

/**
 * The certificate hosts that serve a TLS name, best first: the name itself,
 * then the wildcard one level up (`a.example.com` → `*.example.com`), which
 * covers exactly one label (RFC 6125 §6.4.3), as the router matches it.
 */
export function certificateHostsFor(name: string): string[] {
  const dot = name.indexOf(".");
  return dot > 0 ? [name, `*${name.slice(dot)}`] : [name];
}

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
 * A self-signed certificate for names no service has: TLS servers hand their
 * first certificate to unknown names, and this way that is never a real
 * site's certificate (clients fail verification cleanly).
 */
export function fallbackCertificate(): { cert: string; key: string } {
  return selfSignedCertificate("parachute default certificate", 3650);
}

/**
 * ACME certificates cached on disk, one pair of files per host and ACME
 * directory, so that a host's staging and production certificates are kept
 * apart and each is loaded only for the directory (CA) that issued it. Each
 * directory has a folder named after its host, port and path
 * (`<certs>/acme-v02.api.letsencrypt.org_directory/<host>.crt`).
 */
export class CertificateCache {
  constructor(readonly dir: string) {}

  private folder(directory: string): string {
    const url = new URL(directory);
    return path.join(this.dir, `${url.host}${url.pathname}`.replace(/[^a-z0-9.-]/gi, "_"));
  }

  private files(folder: string, host: string) {
    const safe = host.replace(/[^a-z0-9.-]/gi, "_");
    return { cert: path.join(folder, `${safe}.crt`), key: path.join(folder, `${safe}.key`), allowed: path.join(folder, `${safe}.on-demand`), lock: path.join(folder, `${safe}.lock`) };
  }

  /**
   * Records which on-demand service's URL allowed the host: its cached
   * certificate is served without asking to that service only, not to
   * another one that answers for the host later (a catch-all).
   */
  recordAllowed(host: string, directory: string, service: string) {
    this.ensureDir();
    const folder = this.folder(directory);
    fs.mkdirSync(folder, { recursive: true, mode: 0o700 });
    writePrivate(this.files(folder, host).allowed, service);
  }

  /** The on-demand service that allowed the host, if one did. */
  allowedBy(host: string, directory: string): string | undefined {
    try {
      return fs.readFileSync(this.files(this.folder(directory), host).allowed, "utf8");
    } catch {
      return undefined;
    }
  }

  ensureDir() {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** The lock file hosts sharing this cache take before ordering the host's certificate from the directory (fleet-lock.ts). */
  lockFile(host: string, directory: string): string {
    const folder = this.folder(directory);
    fs.mkdirSync(folder, { recursive: true, mode: 0o700 });
    return this.files(folder, host).lock;
  }

  load(host: string, directory: string): Certificate | undefined {
    return read(this.files(this.folder(directory), host), directory) ?? this.takeOver(host, directory);
  }

  /**
   * Versions before the per-directory folders kept one pair per host in
   * `<certs>` itself, with no record of its directory. The first directory
   * that asks for the host is the one its restored service uses (normally
   * the one the pair was ordered from), so it takes the pair over: moved
   * into its folder, it is not ordered again, and no other directory can
   * take it too.
   */
  private takeOver(host: string, directory: string): Certificate | undefined {
    const legacy = this.files(this.dir, host);
    const found = read(legacy, directory);
    if (!found) return undefined;
    const folder = this.folder(directory);
    const moved = this.files(folder, host);
    try {
      fs.mkdirSync(folder, { recursive: true, mode: 0o700 });
      fs.renameSync(legacy.key, moved.key);
      fs.renameSync(legacy.cert, moved.cert);
    } catch {
      // Served from where it is; the move is tried again at the next load.
    }
    return found;
  }

  /** The hosts with a certificate cached for the directory (names whose file name was changed to be safe are left out). */
  hosts(directory: string): string[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.folder(directory));
    } catch {
      return [];
    }
    return names.filter((name) => name.endsWith(".crt") && !name.includes("_")).map((name) => name.slice(0, -".crt".length));
  }

  /** The host's certificates cached for other directories (unknown URLs), e.g. to serve while this one issues. */
  others(host: string, directory: string): Certificate[] {
    const own = this.folder(directory);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(this.dir, { withFileTypes: true });
    } catch {
      return [];
    }
    return entries
      .filter((entry) => entry.isDirectory() && path.join(this.dir, entry.name) !== own)
      .map((entry) => read(this.files(path.join(this.dir, entry.name), host), undefined))
      .filter((c): c is Certificate => c !== undefined);
  }

  save(host: string, directory: string, cert: string, key: string) {
    this.ensureDir();
    const folder = this.folder(directory);
    fs.mkdirSync(folder, { recursive: true, mode: 0o700 });
    const files = this.files(folder, host);
    writePrivate(files.key, key);
    writePrivate(files.cert, cert);
  }
}

/**
 * A cached pair, or undefined if either file is missing or they do not
 * match: the key and certificate are replaced one after the other, and in a
 * shared cache another host may be between the two.
 */
function read(files: { cert: string; key: string }, directory: string | undefined): Certificate | undefined {
  try {
    const cert = fs.readFileSync(files.cert, "utf8");
    const key = fs.readFileSync(files.key, "utf8");
    const x509 = new X509Certificate(cert);
    if (!x509.checkPrivateKey(createPrivateKey(key))) return undefined;
    return { cert, key, notAfter: new Date(x509.validTo), source: "acme", ...(directory ? { directory } : {}) };
  } catch {
    return undefined;
  }
}

/** A temporary name beside `file`, unique across the hosts that may share its directory (pids alone collide between containers). */
function tempName(file: string): string {
  return `${file}.tmp-${process.pid}-${randomUUID().slice(0, 8)}`;
}

/** Writes a file readable by the owner only, atomically. */
export function writePrivate(file: string, content: string) {
  const tmp = tempName(file);
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/**
 * Writes a file readable by the owner only, unless it exists: then its
 * content is kept and returned. Of several hosts creating it at once, one
 * wins and all use its content (the ACME account key of a shared cache).
 */
export function writePrivateOnce(file: string, content: string): string {
  const tmp = tempName(file);
  fs.writeFileSync(tmp, content, { mode: 0o600 });
  try {
    fs.linkSync(tmp, file);
    return content;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return fs.readFileSync(file, "utf8");
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
