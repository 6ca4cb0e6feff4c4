// Keeps one certificate per TLS host: custom certificates as deployed, ACME
// certificates from the disk cache or issued in the background (each only for
// the directory that issued it), renewed before they expire. Whenever the set
// of certificates changes, `onChange` rebuilds the HTTPS listener. With a
// cache shared by a fleet (fleet.ts), orders go through its lock, and the
// periodic check also loads what other hosts renewed. Hosts of on-demand
// services join at their first handshake, once the service's URL allows them
// (see on-demand.ts). Orders run a few at a time (OrderQueue).
import { noteActivity } from "../data/memory.ts";
import { log } from "../log.ts";
import type { Service } from "../service/service.ts";
import { formatDuration } from "../values.ts";
import { challengesFor, type AcmeChallenge, type AcmeIssuer } from "./acme.ts";
import { CertificateCache, certificateExpiry, certificateHostsFor, type Certificate } from "./certificates.ts";
import type { Fleet, Obtained } from "./fleet.ts";
import { OnDemandGate } from "./on-demand.ts";
import { OrderQueue } from "./order-queue.ts";

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
  /** The ACME directory its certificate must come from (unused with a custom certificate). */
  directory: string;
  /** How its ACME certificate is ordered: these challenges, in turn. */
  challenges: AcmeChallenge[];
  custom?: Certificate;
}

/** A failed ACME order: why, and when (ms since the epoch). */
export interface AcmeFailure {
  message: string;
  at: number;
}

export interface TlsHostStatus {
  host: string;
  source: "acme" | "custom";
  /** When the certificate served for the host expires (ms since the epoch); absent while it has none. */
  expiresAt?: number;
  /** An ACME order for it is running now. */
  issuing: boolean;
  error?: AcmeFailure;
}

export class CertificateManager {
  private readonly certs = new Map<string, Certificate>();
  private wanted = new Map<string, Wanted>();
  /** Services with --tls-on-demand-url, by name. */
  private onDemandServices = new Map<string, Service>();
  /** On-demand hosts allowed (by the URL, or by a certificate cached earlier), and their service. */
  private readonly onDemandHosts = new Map<string, string>();
  /** The order running for each host (one at a time per host, whatever its directory). */
  private readonly issuing = new Map<string, Promise<void>>();
  /** Failed attempts in a row per host (for the backoff), and the pending retry with its directory. */
  private readonly attempts = new Map<string, number>();
  private readonly retries = new Map<string, { directory: string; timer: ReturnType<typeof setTimeout> }>();
  private readonly waiters = new Map<string, ((issued: boolean) => void)[]>();
  /** Each host's last failed order, until one succeeds (the status page shows it). */
  private readonly lastErrors = new Map<string, AcmeFailure>();
  private renewTimer: ReturnType<typeof setInterval> | undefined;
  onChange: () => void = () => {};
  /** Called when an order starts or ends (workers wait for a certificate only while one runs). */
  onIssuingChange: () => void = () => {};
  /** Called when the open challenges change; resolves once every process that answers them has the current set. */
  onChallengesChange: () => Promise<void> = () => Promise.resolve();

  constructor(
    private readonly cache: CertificateCache,
    readonly issuer: AcmeIssuer,
    private readonly renewal: RenewalSettings = DEFAULT_RENEWAL,
    /** Set when the cache is shared with other hosts (`--tls-acme-cache-path`). */
    private readonly fleet?: Fleet,
    private readonly gate = new OnDemandGate(10),
    private readonly queue = new OrderQueue(4),
  ) {
    issuer.onChallengesChange = () => {
      this.fleet?.publishChallenges(issuer.challenges);
      return this.onChallengesChange();
    };
  }

  start() {
    this.renewTimer = setInterval(() => this.renewDue(), this.renewal.checkIntervalMs);
  }

  stop() {
    clearInterval(this.renewTimer);
    for (const retry of this.retries.values()) clearTimeout(retry.timer);
  }

  /** The certificates to serve, by host. */
  entries(): { host: string; cert: string; key: string }[] {
    return [...this.certs].map(([host, c]) => ({ host, cert: c.cert, key: c.key }));
  }

  /** Whether a TLS name has a certificate: its own or its wildcard's. */
  has(name: string): boolean {
    return certificateHostsFor(name).some((host) => this.certs.has(host));
  }

  challenge(token: string): string | undefined {
    return this.issuer.challenges.get(token) ?? this.fleet?.challenge(token);
  }

  alpnChallenge(host: string) {
    return this.issuer.alpnChallenges.get(host);
  }

  /** Hosts whose order is running now. */
  issuingHosts(): string[] {
    return [...this.issuing.keys()];
  }

  expiries(): { host: string; expiresAt: number }[] {
    return [...this.certs].map(([host, c]) => ({ host, expiresAt: c.notAfter.getTime() }));
  }

  /** Every host that wants TLS: its certificate's expiry if it has one, whether an order runs, its last ACME error. */
  hosts(): TlsHostStatus[] {
    return [...this.wanted.values()].map(({ host, custom }) => {
      const expiresAt = this.certs.get(host)?.notAfter.getTime();
      const error = this.lastErrors.get(host);
      return {
        host,
        source: custom ? ("custom" as const) : ("acme" as const),
        issuing: this.issuing.has(host),
        ...(expiresAt !== undefined ? { expiresAt } : {}),
        ...(error ? { error } : {}),
      };
    });
  }

  /**
   * Resolves true once `host` has a certificate; false at once when no order
   * for it is running (nothing to wait for, e.g. failing and backing off),
   * when its order fails, or after `timeoutMs`.
   */
  waitFor(name: string, timeoutMs: number): Promise<boolean> {
    if (this.has(name)) return Promise.resolve(true);
    // A name under a wildcard waits for the wildcard's order.
    const host = certificateHostsFor(name).find((h) => this.issuing.has(h));
    if (!host) return Promise.resolve(false);
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
  sync(services: Iterable<Service>, customs: ReadonlyMap<string, Certificate>, owner: OnDemandOwner = () => undefined) {
    const wanted = new Map<string, Wanted>();
    const onDemand = new Map<string, Service>();
    for (const service of services) {
      if (!service.options.tls) continue;
      if (service.options.tlsOnDemandUrl) {
        onDemand.set(service.name, service);
        continue;
      }
      const custom = customs.get(service.name);
      const directory = this.issuer.directoryFor(service.options.tlsStaging);
      const challenges = challengesFor(service.options);
      for (const host of service.options.hosts) wanted.set(host, { host, directory, challenges, custom });
    }
    this.onDemandServices = onDemand;
    let changed = this.adoptCached(owner);
    // An allowed host stays while routing still sends it to its on-demand service (a static host of another service wins).
    for (const [host, name] of this.onDemandHosts) {
      const service = onDemand.get(name);
      if (!service || wanted.has(host) || owner(host)?.name !== name) {
        this.onDemandHosts.delete(host);
        continue;
      }
      wanted.set(host, this.onDemandWant(host, service));
    }
    this.wanted = wanted;
    for (const host of this.lastErrors.keys()) if (!wanted.has(host) || wanted.get(host)!.custom) this.lastErrors.delete(host);
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
      if (this.syncAcme(want, current)) changed = true;
    }
    if (changed) this.changed();
  }

  /**
   * Valid certificates in the cache for hosts an on-demand service answers
   * for and once allowed (before a restart, or before a redeploy): served
   * without asking again, and renewed like the others. True if any was added.
   */
  private adoptCached(owner: OnDemandOwner): boolean {
    let adopted = false;
    const directories = new Set([...this.onDemandServices.values()].map((s) => this.issuer.directoryFor(s.options.tlsStaging)));
    for (const directory of directories) {
      for (const host of this.cache.hosts(directory)) {
        if (this.onDemandHosts.has(host) || this.certs.has(host)) continue;
        const service = owner(host);
        if (!service || this.onDemandServices.get(service.name) !== service) continue;
        if (this.issuer.directoryFor(service.options.tlsStaging) !== directory) continue;
        if (this.cache.allowedBy(host, directory) !== service.name) continue;
        const cached = this.cache.load(host, directory);
        if (!cached || !isValid(cached)) continue;
        this.onDemandHosts.set(host, service.name);
        this.certs.set(host, cached);
        adopted = true;
      }
    }
    return adopted;
  }

  /**
   * A handshake for `host`, which on-demand service `serviceName` answers
   * for and which has no certificate: true once its certificate is there or
   * on its way (the handshake then waits for it), false if it may not have
   * one. A cached certificate this service allowed is served without
   * asking; otherwise the service's URL is asked (through the gate), and
   * only a yes serves or orders.
   */
  async requestOnDemand(host: string, serviceName: string): Promise<boolean> {
    if (this.certs.has(host) || this.issuing.has(host) || this.onDemandHosts.has(host)) return true;
    const service = this.onDemandServices.get(serviceName);
    if (!service) return false;
    const directory = this.issuer.directoryFor(service.options.tlsStaging);
    const loaded = this.cache.load(host, directory);
    const cached = loaded && isValid(loaded) ? loaded : undefined;
    if (cached && this.cache.allowedBy(host, directory) === serviceName) {
      this.allow(host, service, cached);
      return true;
    }
    const verdict = await this.gate.check(service, host);
    if (!verdict.allowed) {
      const fields = { host, service: serviceName, reason: verdict.reason };
      if (verdict.asked) log.warn("On-demand certificate refused", fields);
      else log.debug("On-demand certificate refused", fields);
      return false;
    }
    // A deploy or removal may have come while the URL answered.
    if (this.onDemandServices.get(serviceName) !== service || !service.options.tlsOnDemandUrl) return false;
    if (!this.onDemandHosts.has(host)) {
      log.info("On-demand certificate allowed", { host, service: serviceName });
      try {
        this.cache.recordAllowed(host, directory, serviceName);
      } catch (error) {
        log.error("Cannot record the on-demand host; it will be asked about again after a restart", { host, error: (error as Error).message });
      }
      // A certificate cached for the host earlier (another service's) serves at once: nothing to order.
      this.allow(host, service, cached);
    }
    return true;
  }

  private onDemandWant(host: string, service: Service): Wanted {
    return { host, directory: this.issuer.directoryFor(service.options.tlsStaging), challenges: challengesFor(service.options) };
  }

  /** Makes an allowed on-demand host wanted: served from `cached`, or ordered. */
  private allow(host: string, service: Service, cached: Certificate | undefined) {
    this.onDemandHosts.set(host, service.name);
    const want = this.onDemandWant(host, service);
    this.wanted.set(host, want);
    if (!cached) return this.issueInBackground(want);
    this.certs.set(host, cached);
    if (this.dueForRenewal(cached)) this.issueInBackground(want);
    this.changed();
  }

  /** Serves the wanted directory's certificate for the host, ordering it if needed; true if what is served changed. */
  private syncAcme(want: Wanted, current: Certificate | undefined): boolean {
    if (current?.source === "acme" && current.directory === want.directory) return false;
    const cached = this.cache.load(want.host, want.directory);
    if (cached && isValid(cached)) {
      this.certs.set(want.host, cached);
      if (this.dueForRenewal(cached)) this.issueInBackground(want);
      return true;
    }
    const standIn = this.standIn(want, current);
    this.issueInBackground(want);
    if (standIn === current) return false;
    if (standIn) this.certs.set(want.host, standIn);
    else this.certs.delete(want.host);
    return true;
  }

  /**
   * Another directory's certificate for the host (staging for production or
   * the other way round), served until the wanted directory has issued its
   * own, so that a switch leaves no gap. A custom certificate the service
   * dropped is not one.
   */
  private standIn(want: Wanted, current: Certificate | undefined): Certificate | undefined {
    if (current?.source === "acme" && isValid(current)) return current;
    return this.cache
      .others(want.host, want.directory)
      .filter(isValid)
      .sort((a, b) => b.notAfter.getTime() - a.notAfter.getTime())[0];
  }

  private changed() {
    // The listener gets the new set first, so woken clients find the certificate.
    this.onChange();
    for (const host of this.certs.keys()) this.wake(host, true);
  }

  /** The directory the host wants an ACME certificate from; undefined if it wants none (gone, or custom). */
  private wantedDirectory(host: string): string | undefined {
    const want = this.wanted.get(host);
    return want && !want.custom ? want.directory : undefined;
  }

  private dueForRenewal(cert: Certificate): boolean {
    return cert.notAfter.getTime() - Date.now() < this.renewal.renewBeforeMs;
  }

  private renewDue() {
    if (this.fleet) this.reloadShared();
    for (const want of this.wanted.values()) {
      const cert = this.certs.get(want.host);
      if (!want.custom && cert && this.dueForRenewal(cert)) this.issueInBackground(want);
    }
  }

  /**
   * Serves what another host of the fleet put in the shared cache: a
   * certificate it renewed (later expiry than the one served), or one for a
   * host this one has none for from that directory (its own order failing
   * and backing off).
   */
  private reloadShared() {
    let changed = false;
    for (const want of this.wanted.values()) {
      if (want.custom || this.issuing.has(want.host)) continue;
      const current = this.certs.get(want.host);
      const cached = this.cache.load(want.host, want.directory);
      if (!cached || !isValid(cached) || cached.cert === current?.cert) continue;
      // A stand-in from another directory gives way to any valid one from the wanted directory.
      if (current?.directory === want.directory && cached.notAfter.getTime() <= current.notAfter.getTime()) continue;
      this.cancelRetry(want.host);
      this.certs.set(want.host, cached);
      log.info("Certificate reloaded from the shared cache", { host: want.host, not_after: cached.notAfter.toISOString() });
      changed = true;
    }
    if (changed) this.changed();
  }

  /** The certificate from the CA, cached before it is served; in a fleet, only if no other host has it (`Fleet.obtain`). */
  private obtain(want: Wanted): Promise<Obtained> {
    const { host, directory } = want;
    const order = async () => {
      const pair = await this.queue.run(() => this.issuer.issue(host, directory, want.challenges));
      // Cached even if the host wants another directory now: a switch back finds it.
      try {
        this.cache.save(host, directory, pair.cert, pair.key);
      } catch (error) {
        log.error("Cannot cache certificate; serving it anyway", { host, error: (error as Error).message });
      }
      return pair;
    };
    if (!this.fleet) return order().then((pair) => ({ ...pair, from: "order" as const }));
    return this.fleet.obtain(host, directory, (cached) => isValid(cached) && !this.dueForRenewal(cached), order);
  }

  private issueInBackground(want: Wanted) {
    const { host, directory } = want;
    // An order for another directory that is still running is followed by
    // this one when it ends (see `followUp`).
    if (this.issuing.has(host)) return;
    const retry = this.retries.get(host);
    if (retry?.directory === directory) return;
    // The backoff was for a directory the host no longer wants: order now.
    if (retry) this.cancelRetry(host);
    const renewing = this.certs.get(host)?.directory === directory;
    log.info(renewing ? "Renewing certificate" : "Requesting certificate", { host, directory });
    const work = this.obtain(want)
      .then((obtained) => this.issued(want, obtained, renewing))
      .catch((error: unknown) => this.failed(want, error))
      .finally(() => {
        // An order leaves native memory behind (TLS contexts of its requests to
        // the CA, its key pair) that only a collection frees: it counts as
        // activity for data/memory.ts, like a request (docs/benchmarks.md
        // "On-demand TLS at 1,000 hosts").
        noteActivity();
        // Challenges end without a change notice (acme-client removes them after validation).
        this.fleet?.publishChallenges(this.issuer.challenges);
        this.issuing.delete(host);
        this.wake(host, this.certs.has(host));
        this.onIssuingChange();
        this.followUp(host, directory);
      });
    this.issuing.set(host, work);
    this.onIssuingChange();
  }

  private issued(want: Wanted, { cert, key, from }: Obtained, renewing: boolean) {
    const { host, directory } = want;
    this.attempts.delete(host);
    this.lastErrors.delete(host);
    // Other deploys re-sync the wanted set while an order runs; what
    // matters is that the host still wants a certificate from this directory.
    if (this.wantedDirectory(host) !== directory) return;
    const notAfter = certificateExpiry(cert);
    this.certs.set(host, { cert, key, notAfter, source: "acme", directory });
    if (from === "cache") log.info("Certificate loaded from the shared cache", { host, not_after: notAfter.toISOString() });
    else log.info(renewing ? "Certificate renewed" : "Certificate issued", { host, not_after: notAfter.toISOString() });
    this.changed();
  }

  private failed(want: Wanted, error: unknown) {
    const { host, directory } = want;
    const reason = (error as Error)?.message ?? String(error);
    this.lastErrors.set(host, { message: reason, at: Date.now() });
    this.wake(host, false);
    if (this.wantedDirectory(host) !== directory) {
      // Nobody wants this directory's certificate any more: no retry.
      this.attempts.delete(host);
      log.error("Certificate request failed", { host, directory, reason });
      return;
    }
    // Back off exponentially: CAs rate-limit failed validations, and a
    // tight loop would only make things worse.
    const attempts = (this.attempts.get(host) ?? 0) + 1;
    this.attempts.set(host, attempts);
    const delay = Math.min(this.renewal.backoffMs * 2 ** (attempts - 1), this.renewal.maxBackoffMs);
    log.error("Certificate request failed", { host, directory, reason, attempt: attempts, retry_in: formatDuration(delay) });
    const timer = setTimeout(() => {
      this.retries.delete(host);
      const current = this.wanted.get(host);
      if (current && !current.custom) this.issueInBackground(current);
      else this.attempts.delete(host);
    }, delay);
    this.retries.set(host, { directory, timer });
  }

  private cancelRetry(host: string) {
    clearTimeout(this.retries.get(host)?.timer);
    this.retries.delete(host);
    this.attempts.delete(host);
  }

  /**
   * After an order for a directory the host no longer wants (the service
   * switched between staging and production meanwhile), orders from the
   * wanted one, unless its certificate came from the cache meanwhile.
   */
  private followUp(host: string, directory: string) {
    const want = this.wanted.get(host);
    if (!want || want.custom || want.directory === directory) return;
    if (this.certs.get(host)?.directory === want.directory) return;
    this.issueInBackground(want);
  }
}

/** The on-demand service routing sends a host to, if any. */
export type OnDemandOwner = (host: string) => Service | undefined;

function isValid(cert: Certificate): boolean {
  return cert.notAfter.getTime() > Date.now();
}
