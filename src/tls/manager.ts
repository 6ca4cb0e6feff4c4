// Keeps one certificate per TLS host: custom certificates as deployed, ACME
// certificates from the disk cache or issued in the background, renewed before
// they expire. Whenever the set of certificates changes, `onChange` rebuilds
// the HTTPS listener.
import { log } from "../log.ts";
import type { Service } from "../service/service.ts";
import { formatDuration } from "../values.ts";
import type { AcmeIssuer } from "./acme.ts";
import { CertificateCache, certificateExpiry, type Certificate } from "./certificates.ts";

export interface RenewalSettings {
  /** Renew when a certificate expires within this long (default 30 days). */
  renewBeforeMs: number;
  /** How often expiry is checked (default 12 hours). */
  checkIntervalMs: number;
  /** First retry delay after a failed issuance; doubles up to `maxBackoffMs`. */
  backoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RENEWAL: RenewalSettings = {
  renewBeforeMs: 30 * 86_400_000,
  checkIntervalMs: 12 * 3_600_000,
  backoffMs: 30_000,
  maxBackoffMs: 3_600_000,
};

interface Wanted {
  host: string;
  staging: boolean;
  custom?: Certificate;
}

export class CertificateManager {
  private readonly certs = new Map<string, Certificate>();
  private wanted = new Map<string, Wanted>();
  private readonly issuing = new Map<string, Promise<void>>();
  /** Failed attempts in a row per host (for the backoff), and the pending retry. */
  private readonly attempts = new Map<string, number>();
  private readonly retries = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly waiters = new Map<string, ((issued: boolean) => void)[]>();
  private renewTimer: ReturnType<typeof setInterval> | undefined;
  onChange: () => void = () => {};

  constructor(
    private readonly cache: CertificateCache,
    readonly issuer: AcmeIssuer,
    private readonly renewal: RenewalSettings = DEFAULT_RENEWAL,
  ) {}

  start() {
    this.renewTimer = setInterval(() => this.renewDue(), this.renewal.checkIntervalMs);
  }

  stop() {
    clearInterval(this.renewTimer);
    for (const timer of this.retries.values()) clearTimeout(timer);
  }

  /** The certificates to serve, by host. */
  entries(): { host: string; cert: string; key: string }[] {
    return [...this.certs].map(([host, c]) => ({ host, cert: c.cert, key: c.key }));
  }

  has(host: string): boolean {
    return this.certs.has(host);
  }

  expiries(): { host: string; expiresAt: number }[] {
    return [...this.certs].map(([host, c]) => ({ host, expiresAt: c.notAfter.getTime() }));
  }

  /**
   * Resolves true once `host` has a certificate; false at once when no order
   * for it is running (nothing to wait for, e.g. failing and backing off),
   * when its order fails, or after `timeoutMs`.
   */
  waitFor(host: string, timeoutMs: number): Promise<boolean> {
    if (this.certs.has(host)) return Promise.resolve(true);
    if (!this.issuing.has(host)) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const list = this.waiters.get(host) ?? [];
      list.push((issued) => {
        clearTimeout(timer);
        resolve(issued);
      });
      this.waiters.set(host, list);
    });
  }

  private wake(host: string, issued: boolean) {
    const list = this.waiters.get(host);
    if (!list) return;
    this.waiters.delete(host);
    for (const wake of list) wake(issued);
  }

  /**
   * Brings the certificate set in line with the services: custom
   * certificates as given, ACME hosts from the cache or issued in the
   * background, hosts no longer served dropped.
   */
  sync(services: Iterable<Service>, customs: ReadonlyMap<string, Certificate>) {
    const wanted = new Map<string, Wanted>();
    for (const service of services) {
      if (!service.options.tls) continue;
      const custom = customs.get(service.name);
      for (const host of service.options.hosts) wanted.set(host, { host, staging: service.options.tlsStaging, custom });
    }
    this.wanted = wanted;
    let changed = false;
    for (const host of [...this.certs.keys()]) {
      if (!wanted.has(host)) {
        this.certs.delete(host);
        changed = true;
      }
    }
    for (const want of wanted.values()) {
      const current = this.certs.get(want.host);
      if (want.custom) {
        if (current !== want.custom) {
          this.certs.set(want.host, want.custom);
          changed = true;
        }
        continue;
      }
      if (current?.source === "acme") continue;
      const cached = this.cache.load(want.host);
      if (cached && cached.notAfter.getTime() > Date.now()) {
        this.certs.set(want.host, cached);
        changed = true;
        if (this.dueForRenewal(cached)) this.issueInBackground(want);
      } else {
        if (current) this.certs.delete(want.host);
        changed ||= Boolean(current);
        this.issueInBackground(want);
      }
    }
    if (changed) this.changed();
  }

  private changed() {
    // The listener gets the new set first, so woken clients find the certificate.
    this.onChange();
    for (const host of this.certs.keys()) this.wake(host, true);
  }

  private wantsAcme(host: string): boolean {
    const want = this.wanted.get(host);
    return Boolean(want && !want.custom);
  }

  private dueForRenewal(cert: Certificate): boolean {
    return cert.notAfter.getTime() - Date.now() < this.renewal.renewBeforeMs;
  }

  private renewDue() {
    for (const want of this.wanted.values()) {
      const cert = this.certs.get(want.host);
      if (!want.custom && cert && this.dueForRenewal(cert)) this.issueInBackground(want);
    }
  }

  private issueInBackground(want: Wanted) {
    if (this.issuing.has(want.host) || this.retries.has(want.host)) return;
    const renewing = this.certs.has(want.host);
    log.info(renewing ? "Renewing certificate" : "Requesting certificate", { host: want.host, directory: this.issuer.directoryFor(want.staging) });
    const work = this.issuer
      .issue(want.host, want.staging)
      .then(({ cert, key }) => {
        this.attempts.delete(want.host);
        // Other deploys re-sync the wanted set while an order runs; what
        // matters is that the host still wants an ACME certificate.
        if (!this.wantsAcme(want.host)) return;
        this.cache.save(want.host, cert, key);
        const notAfter = certificateExpiry(cert);
        this.certs.set(want.host, { cert, key, notAfter, source: "acme" });
        log.info(renewing ? "Certificate renewed" : "Certificate issued", { host: want.host, not_after: notAfter.toISOString() });
        this.changed();
      })
      .catch((error: unknown) => {
        // Back off exponentially: CAs rate-limit failed validations, and a
        // tight loop would only make things worse.
        const attempts = (this.attempts.get(want.host) ?? 0) + 1;
        this.attempts.set(want.host, attempts);
        const delay = Math.min(this.renewal.backoffMs * 2 ** (attempts - 1), this.renewal.maxBackoffMs);
        log.error("Certificate request failed", {
          host: want.host,
          reason: (error as Error)?.message ?? String(error),
          attempt: attempts,
          retry_in: formatDuration(delay),
        });
        this.wake(want.host, false);
        const timer = setTimeout(() => {
          this.retries.delete(want.host);
          const current = this.wanted.get(want.host);
          if (current && this.wantsAcme(want.host)) this.issueInBackground(current);
          else this.attempts.delete(want.host);
        }, delay);
        this.retries.set(want.host, timer);
      })
      .finally(() => {
        this.issuing.delete(want.host);
        this.wake(want.host, this.certs.has(want.host));
      });
    this.issuing.set(want.host, work);
  }
}
