import { afterEach, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CertificateCache, CertificateError, certificateExpiry, fallbackCertificate, loadCustomCertificate, writePrivate, writePrivateOnce } from "./certificates.ts";
import { selfSignedCertificate } from "./self-signed.ts";

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-certs-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A certificate for `name` (its CN, which a certificate without SANs is checked against) written to files. */
function files(name: string, days = 30, keyOf?: string) {
  const dir = tempDir();
  const pair = selfSignedCertificate(name, days);
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  fs.writeFileSync(cert, pair.cert);
  fs.writeFileSync(key, keyOf ?? pair.key);
  return { cert, key, pair };
}

function certError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(CertificateError);
    return (error as Error).message;
  }
  throw new Error("expected a CertificateError");
}

test("a valid certificate and key that cover the hosts load as a custom certificate", () => {
  const { cert, key, pair } = files("app.test");
  const loaded = loadCustomCertificate(cert, key, ["app.test", "APP.test"]);
  expect(loaded.cert).toBe(pair.cert);
  expect(loaded.key).toBe(pair.key);
  expect(loaded.source).toBe("custom");
  expect(loaded.notAfter.getTime()).toBe(Date.parse(new X509Certificate(pair.cert).validTo));
  expect(loaded.notAfter.getTime()).toBeGreaterThan(Date.now() + 29 * 86_400_000);
});

test("a wildcard host needs a wildcard certificate", () => {
  const wild = files("*.example.com");
  expect(loadCustomCertificate(wild.cert, wild.key, ["*.example.com", "a.example.com"]).source).toBe("custom");
  const plain = files("a.example.com");
  expect(certError(() => loadCustomCertificate(plain.cert, plain.key, ["*.example.com"]))).toBe(`certificate ${plain.cert} does not cover host *.example.com`);
});

test("a host the certificate does not name is refused, naming it", () => {
  const { cert, key } = files("app.test");
  expect(certError(() => loadCustomCertificate(cert, key, ["app.test", "other.test"]))).toBe(`certificate ${cert} does not cover host other.test`);
  expect(certError(() => loadCustomCertificate(cert, key, ["sub.app.test"]))).toBe(`certificate ${cert} does not cover host sub.app.test`);
});

test("unreadable files, and files that are not PEM, are named", () => {
  const { cert, key } = files("app.test");
  const missing = path.join(tempDir(), "missing.pem");
  expect(certError(() => loadCustomCertificate(missing, key, []))).toBe(`cannot read certificate ${missing}: ENOENT`);
  expect(certError(() => loadCustomCertificate(cert, missing, []))).toBe(`cannot read private key ${missing}: ENOENT`);
  const junk = path.join(tempDir(), "junk.pem");
  fs.writeFileSync(junk, "not a certificate");
  expect(certError(() => loadCustomCertificate(junk, key, []))).toBe(`${junk} is not a PEM certificate`);
  expect(certError(() => loadCustomCertificate(cert, junk, []))).toBe(`${junk} is not a PEM private key`);
  expect(certError(() => loadCustomCertificate(key, key, []))).toBe(`${key} is not a PEM certificate`);
});

test("a key of another certificate is refused", () => {
  const other = selfSignedCertificate("app.test", 30).key;
  const { cert, key } = files("app.test", 30, other);
  expect(certError(() => loadCustomCertificate(cert, key, ["app.test"]))).toBe(`private key ${key} does not match certificate ${cert}`);
});

test("an expired certificate is refused with its expiry date", () => {
  const { cert, key, pair } = files("app.test", -1);
  const expired = new Date(new X509Certificate(pair.cert).validTo).toISOString();
  expect(certError(() => loadCustomCertificate(cert, key, ["app.test"]))).toBe(`certificate ${cert} expired on ${expired}`);
});

test("certificateExpiry reads notAfter; the fallback certificate is self-signed for ten years", () => {
  const pair = selfSignedCertificate("x", 10);
  expect(certificateExpiry(pair.cert).getTime()).toBe(Date.parse(new X509Certificate(pair.cert).validTo));
  const fallback = new X509Certificate(fallbackCertificate().cert);
  expect(fallback.subject).toBe("CN=parachute default certificate");
  expect(Math.round((Date.parse(fallback.validTo) - Date.now()) / 86_400_000)).toBe(3650);
});

const PROD = "https://acme-v02.api.letsencrypt.org/directory";
const STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory";

test("the cache keeps one pair per host and ACME directory, private to the owner", () => {
  const dir = path.join(tempDir(), "certs");
  const cache = new CertificateCache(dir);
  const pair = selfSignedCertificate("app.test", 30);
  expect(cache.load("app.test", PROD)).toBeUndefined();
  cache.save("app.test", PROD, pair.cert, pair.key);
  const folder = path.join(dir, "acme-v02.api.letsencrypt.org_directory");
  expect(fs.readdirSync(folder).sort()).toEqual(["app.test.crt", "app.test.key"]);
  expect(fs.statSync(path.join(folder, "app.test.key")).mode & 0o777).toBe(0o600);
  expect(fs.statSync(path.join(folder, "app.test.crt")).mode & 0o777).toBe(0o600);
  expect(cache.load("app.test", PROD)).toEqual({ cert: pair.cert, key: pair.key, notAfter: certificateExpiry(pair.cert), source: "acme", directory: PROD });
  expect(cache.load("app.test", STAGING)).toBeUndefined();
  expect(cache.load("other.test", PROD)).toBeUndefined();
});

test("a wildcard host is kept under a file-safe name", () => {
  const dir = tempDir();
  const cache = new CertificateCache(dir);
  const pair = selfSignedCertificate("*.example.com", 30);
  cache.save("*.example.com", STAGING, pair.cert, pair.key);
  expect(fs.readdirSync(path.join(dir, "acme-staging-v02.api.letsencrypt.org_directory")).sort()).toEqual(["_.example.com.crt", "_.example.com.key"]);
  expect(cache.load("*.example.com", STAGING)?.cert).toBe(pair.cert);
});

test("others lists the host's certificates from the other directories only", () => {
  const cache = new CertificateCache(tempDir());
  const prod = selfSignedCertificate("app.test", 30);
  const staging = selfSignedCertificate("app.test", 30);
  cache.save("app.test", PROD, prod.cert, prod.key);
  cache.save("app.test", STAGING, staging.cert, staging.key);
  const others = cache.others("app.test", PROD);
  expect(others.map((c) => c.cert)).toEqual([staging.cert]);
  expect(others[0]!.directory).toBeUndefined(); // the folder name does not say which URL it was
  expect(cache.others("nobody.test", PROD)).toEqual([]);
  expect(new CertificateCache(path.join(tempDir(), "none")).others("app.test", PROD)).toEqual([]);
});

test("a pair of the old flat layout is taken over by the first directory that asks for it", () => {
  const dir = tempDir();
  const pair = selfSignedCertificate("app.test", 30);
  fs.writeFileSync(path.join(dir, "app.test.crt"), pair.cert);
  fs.writeFileSync(path.join(dir, "app.test.key"), pair.key);
  const cache = new CertificateCache(dir);
  expect(cache.load("app.test", STAGING)?.cert).toBe(pair.cert);
  expect(fs.existsSync(path.join(dir, "app.test.crt"))).toBe(false);
  expect(fs.readdirSync(path.join(dir, "acme-staging-v02.api.letsencrypt.org_directory")).sort()).toEqual(["app.test.crt", "app.test.key"]);
  expect(cache.load("app.test", PROD)).toBeUndefined(); // no other directory can take it too
  expect(cache.load("app.test", STAGING)?.directory).toBe(STAGING);
});

test("writePrivate replaces a file atomically, mode 0600, leaving no temp file", () => {
  const dir = tempDir();
  const file = path.join(dir, "secret");
  writePrivate(file, "one");
  writePrivate(file, "two");
  expect(fs.readFileSync(file, "utf8")).toBe("two");
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(fs.readdirSync(dir)).toEqual(["secret"]);
});

test("hosts lists a directory's cached hosts; the on-demand service that allowed a host is kept beside it", () => {
  const cache = new CertificateCache(tempDir());
  expect(cache.hosts(PROD)).toEqual([]);
  const pair = selfSignedCertificate("a.test", 30);
  cache.save("a.test", PROD, pair.cert, pair.key);
  cache.save("b.test", PROD, pair.cert, pair.key);
  cache.save("*.example.com", PROD, pair.cert, pair.key);
  cache.save("c.test", STAGING, pair.cert, pair.key);
  expect(cache.hosts(PROD).sort()).toEqual(["a.test", "b.test"]);
  expect(cache.allowedBy("a.test", PROD)).toBeUndefined();
  cache.recordAllowed("a.test", PROD, "shops");
  expect(cache.allowedBy("a.test", PROD)).toBe("shops");
  expect(cache.allowedBy("a.test", STAGING)).toBeUndefined();
  expect(cache.hosts(PROD).sort()).toEqual(["a.test", "b.test"]);
});

test("a cached pair whose key does not match its certificate (another host between replacing the two) is not loaded", () => {
  const cache = new CertificateCache(tempDir());
  const first = selfSignedCertificate("a.test", 30);
  const second = selfSignedCertificate("a.test", 30);
  cache.save("a.test", "https://ca.test/dir", first.cert, first.key);
  expect(cache.load("a.test", "https://ca.test/dir")?.cert).toBe(first.cert);
  // The new key is in place, the certificate not yet.
  const folder = fs.readdirSync(cache.dir)[0]!;
  writePrivate(path.join(cache.dir, folder, "a.test.key"), second.key);
  expect(cache.load("a.test", "https://ca.test/dir")).toBeUndefined();
  writePrivate(path.join(cache.dir, folder, "a.test.crt"), second.cert);
  expect(cache.load("a.test", "https://ca.test/dir")?.cert).toBe(second.cert);
});

test("writePrivateOnce writes a file 0600 unless it exists, and returns what is there: of two writers, both use the first", () => {
  const file = path.join(tempDir(), "account.key");
  expect(writePrivateOnce(file, "first")).toBe("first");
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(writePrivateOnce(file, "second")).toBe("first");
  expect(fs.readFileSync(file, "utf8")).toBe("first");
  // No temporary file is left beside it.
  expect(fs.readdirSync(path.dirname(file))).toEqual(["account.key"]);
});
