// ACME issuance with acme-client (README "TLS"), by one of three challenges:
// HTTP-01, answered by the proxy itself under /.well-known/acme-challenge/
// on its HTTP port; TLS-ALPN-01 (RFC 8737), answered on the HTTPS port with a
// challenge certificate to a ClientHello that offers `acme-tls/1`
// (tls-front.ts); DNS-01, published by the operator's hook (dns-hook.ts). The
// account key persists under <state-dir>/certs, and the CA finds the account
// by it.
import * as fs from "node:fs";
import https from "node:https";
import * as path from "node:path";
import type * as AcmeClient from "acme-client";
import { writePrivate, writePrivateOnce } from "./certificates.ts";
import { runDnsHook, waitForTxt } from "./dns-hook.ts";
import { alpnChallengeCertificate } from "./self-signed.ts";
import { log } from "../log.ts";

/** Let's Encrypt's directories (the same URLs acme-client lists). */
const LETS_ENCRYPT = {
  production: "https://acme-v02.api.letsencrypt.org/directory",
  staging: "https://acme-staging-v02.api.letsencrypt.org/directory",
};

type Acme = typeof AcmeClient;

export interface AcmeSettings {
  /** Overrides the directory for every non-staging service (PARACHUTE_ACME_DIRECTORY). */
  directoryUrl?: string;
  /** Overrides the directory for `--tls-staging` services (PARACHUTE_ACME_STAGING_DIRECTORY). */
  stagingDirectoryUrl?: string;
  /** A PEM file of CA certificates to trust for the ACME server's own HTTPS (PARACHUTE_ACME_CA). */
  caFile?: string;
  /** Contact address for the account (PARACHUTE_ACME_EMAIL). */
  email?: string;
  /** Resolvers polled for DNS-01 records (PARACHUTE_ACME_DNS_RESOLVER); none: the zone's own name servers. */
  dnsResolvers?: string[];
  /** How long to wait for a DNS-01 record to be visible (PARACHUTE_ACME_DNS_WAIT). */
  dnsWaitMs?: number;
}

/** A challenge a service's certificates are ordered with (`--tls-challenge`, `--tls-dns-hook`). */
export type AcmeChallenge = { type: "http-01" } | { type: "tls-alpn-01" } | { type: "dns-01"; hook: string };

/**
 * The challenges to try, in order, for a service's options. `auto` is
 * HTTP-01, then TLS-ALPN-01 when the CA could not validate that (port 80
 * closed or taken): whether the CA reaches a port cannot be seen from
 * here, and kamal-proxy's ACME client (Go's autocert) likewise tries both.
 */
export function challengesFor(options: { tlsChallenge: string; tlsDnsHook?: string }): AcmeChallenge[] {
  switch (options.tlsChallenge) {
    case "dns-01":
      return options.tlsDnsHook ? [{ type: "dns-01", hook: options.tlsDnsHook }] : [];
    case "http-01":
      return [{ type: "http-01" }];
    case "tls-alpn-01":
      return [{ type: "tls-alpn-01" }];
    default:
      return [{ type: "http-01" }, { type: "tls-alpn-01" }];
  }
}

/** A TLS-ALPN-01 challenge certificate (RFC 8737 §3), served for its host while the challenge is open. */
export interface AlpnCertificate {
  cert: string;
  key: string;
}

const DEFAULT_DNS_WAIT_MS = 120_000;

export class AcmeIssuer {
  /** token → key authorization, served on the HTTP port while a challenge is open. */
  readonly challenges = new Map<string, string>();
  /** host → TLS-ALPN-01 challenge certificate, served on the HTTPS port while a challenge is open. */
  readonly alpnChallenges = new Map<string, AlpnCertificate>();
  /** Resolves once every process that answers HTTP-01 and TLS-ALPN-01 challenges has the current set. */
  onChallengesChange: () => Promise<void> = () => Promise.resolve();
  private accountKey: Promise<Buffer> | undefined;
  /** The account look-up under way per directory, shared by the orders that start meanwhile. */
  private readonly lookups = new Map<string, Promise<string>>();

  /** acme-client, loaded at the first order: it is most of a proxy's memory otherwise (about 35 MB). */
  private library: Promise<Acme> | undefined;
  private readonly ca: Buffer | undefined;

  constructor(
    private readonly dir: string,
    private readonly settings: AcmeSettings,
  ) {
    // Read now, so a bad PARACHUTE_ACME_CA stops the start rather than the first order.
    this.ca = settings.caFile ? fs.readFileSync(settings.caFile) : undefined;
  }

  private acme(): Promise<Acme> {
    this.library ??= import("acme-client").then((acme) => {
      // acme-client sends every request through one axios instance of its
      // own (axios.create() in its src/axios.js), exposed as `acme.axios`;
      // its defaults are the only place for HTTP settings: a Client takes no
      // agent or axios config, and its retry hook reads `acmeSettings` from
      // those defaults (README "HTTP client defaults",
      // https://github.com/publishlab/node-acme-client#http-client-defaults;
      // a per-client instance was proposed in
      // https://github.com/publishlab/node-acme-client/pull/13 and not
      // merged). So these apply to every acme-client request in this process;
      // only this class uses acme-client, and axios's own global defaults are
      // left alone.
      if (this.ca) acme.axios.defaults.httpsAgent = new https.Agent({ ca: this.ca });
      // acme-client retries network errors 5 times with growing delays (75 s in
      // all); our own backoff (manager.ts) retries failed issuances, so fail
      // faster here.
      const acmeSettings = (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings;
      acmeSettings.retryMaxAttempts = 2;
      return acme;
    });
    return this.library;
  }

  directoryFor(staging: boolean): string {
    if (staging) return this.settings.stagingDirectoryUrl ?? LETS_ENCRYPT.staging;
    return this.settings.directoryUrl ?? LETS_ENCRYPT.production;
  }

  /** The account key, read or created once: concurrent first orders must share one account. */
  private account(): Promise<Buffer> {
    this.accountKey ??= (async () => {
      const file = path.join(this.dir, "account.key");
      try {
        return fs.readFileSync(file);
      } catch {
        fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
        const key = await (await this.acme()).crypto.createPrivateEcdsaKey();
        // Hosts sharing the cache may create it at once: all use the one that was written first.
        return Buffer.from(writePrivateOnce(file, key.toString()));
      }
    })();
    this.accountKey.catch(() => (this.accountKey = undefined));
    return this.accountKey;
  }

  /**
   * The account URL at this directory, asked for at every order by the key
   * alone: a newAccount request with `onlyReturnExisting` (RFC 8555 §7.3.1)
   * returns the account the CA has for this key, and only if it has none is
   * one registered. A saved URL is never used for requests, so an account
   * the CA no longer knows (a reset test CA) is simply registered again.
   * acme-client's `client.auto` would register with `termsOfServiceAgreed`
   * instead, but for a key the CA knows it then sends that payload as an
   * account update, which pebble refuses when there is no contact to update
   * ("Use POST-as-GET ... instead of doing an empty update"); this lookup
   * sends none. Orders that start while a lookup is under way share it:
   * of two first orders registering one new key at once, the second meets
   * the account the first just made, and its registration becomes that
   * refused update (test/tls.test.ts checks one account, no failed order).
   */
  private accountUrl(directoryUrl: string, accountKey: Buffer): Promise<string> {
    let lookup = this.lookups.get(directoryUrl);
    if (!lookup) {
      lookup = (async () => {
        const acme = await this.acme();
        const client = new acme.Client({ directoryUrl, accountKey });
        try {
          await client.createAccount({ onlyReturnExisting: true });
        } catch (error) {
          // An unreachable CA (a TypeError, see `explain`) would refuse the
          // registration the same way, after the same request retries.
          if (error instanceof TypeError) throw error;
          await client.createAccount({
            termsOfServiceAgreed: true,
            ...(this.settings.email ? { contact: [`mailto:${this.settings.email}`] } : {}),
          });
        }
        const url = client.getAccountUrl();
        this.recordAccountUrl(directoryUrl, url);
        return url;
      })();
      this.lookups.set(directoryUrl, lookup);
      const done = () => {
        if (this.lookups.get(directoryUrl) === lookup) this.lookups.delete(directoryUrl);
      };
      lookup.then(done, done);
    }
    return lookup;
  }

  /**
   * Writes the account URL per directory to account.json (README "TLS"
   * lists it under <state-dir>/certs): a record for the operator, e.g. to
   * name the account to the CA. It is read only to keep the other
   * directories' entries, so an old state dir's file, stale URLs included,
   * changes nothing but is brought up to date.
   */
  private recordAccountUrl(directory: string, url: string) {
    const file = path.join(this.dir, "account.json");
    let urls: Record<string, string> = {};
    try {
      urls = JSON.parse(fs.readFileSync(file, "utf8")).urls ?? {};
    } catch {
      // None yet, or unreadable: it only records, so start it anew.
    }
    if (urls[directory] === url) return;
    writePrivate(file, JSON.stringify({ urls: { ...urls, [directory]: url } }, null, 2));
  }

  /**
   * Orders a certificate for one host from one directory (see
   * `directoryFor`), by the first of `challenges` the CA validates; resolves
   * with its PEM chain and key. A failure is explained in terms an operator
   * can act on; the caller (manager.ts) retries it with backoff, as
   * acme-client retries single requests but never a whole order.
   */
  async issue(host: string, directoryUrl: string, challenges: AcmeChallenge[] = [{ type: "http-01" }]): Promise<{ cert: string; key: string }> {
    const failures: string[] = [];
    for (const [i, challenge] of challenges.entries()) {
      try {
        return await this.order(host, directoryUrl, challenge);
      } catch (error) {
        const explained = await this.explain(error, directoryUrl);
        // An unreachable CA (a TypeError, see `explain`) fails every challenge alike.
        if (challenges.length === 1 || error instanceof TypeError) throw explained;
        failures.push(`${challenge.type}: ${explained.message}`);
        if (i < challenges.length - 1) log.warn("ACME challenge failed; trying the next one", { host, challenge: challenge.type, reason: explained.message });
      }
    }
    throw new Error(failures.join("; ") || "no ACME challenge to answer");
  }

  /**
   * acme-client reports an unreachable directory as an internal TypeError
   * (its retry hook reads a field the network error lacks): ask the directory
   * directly to name the real cause.
   */
  private async explain(error: unknown, directoryUrl: string): Promise<Error> {
    if (!(error instanceof TypeError)) return error as Error;
    const ca = this.ca?.toString("utf8");
    const cause = await fetch(directoryUrl, { signal: AbortSignal.timeout(10_000), ...(ca ? { tls: { ca } } : {}) }).then(
      (res) => (res.ok ? undefined : `it answered HTTP ${res.status}`),
      (failure: Error & { code?: string }) => failure.code ?? failure.message,
    );
    return new Error(cause ? `cannot reach the ACME directory ${directoryUrl}: ${cause}` : error.message);
  }

  private async order(host: string, directoryUrl: string, challenge: AcmeChallenge): Promise<{ cert: string; key: string }> {
    const accountKey = await this.account();
    const accountUrl = await this.accountUrl(directoryUrl, accountKey);
    const acme = await this.acme();
    const client = new acme.Client({ directoryUrl, accountKey, accountUrl });
    const [key, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] }, await acme.crypto.createPrivateEcdsaKey());
    // With the account URL known, auto skips its own registration.
    const cert = await client.auto({
      csr,
      // Only this type: acme-client fails the order if the CA does not offer it.
      challengePriority: [challenge.type],
      // The self-check would resolve the host through system DNS and port 80,
      // which is wrong behind NAT, split DNS or a non-standard port; the CA's
      // own validation is the check that counts. (DNS-01 waits for its
      // record itself, see `publish`.)
      skipChallengeVerification: true,
      // The CA validates as soon as this returns: the answer must be out by then.
      challengeCreateFn: (authz, offered, keyAuthorization) => this.publish(challenge, authz, offered, keyAuthorization),
      challengeRemoveFn: (authz, offered, keyAuthorization) => this.withdraw(challenge, authz, offered, keyAuthorization),
    });
    return { cert, key: key.toString() };
  }

  /** Puts up the answer to one challenge: on every process's HTTP or HTTPS port, or in DNS by the hook. */
  private async publish(challenge: AcmeChallenge, authz: AcmeClient.Authorization, offered: { type: string; token: string }, keyAuthorization: string) {
    const name = authz.identifier.value;
    log.info("Answering ACME challenge", { host: name, challenge: challenge.type });
    if (challenge.type === "dns-01") {
      // For dns-01 acme-client hands over the record's value, the key authorization's digest (RFC 8555 §8.4).
      const fqdn = dnsRecordName(name);
      await runDnsHook(challenge.hook, "add", fqdn, keyAuthorization);
      await waitForTxt(fqdn, keyAuthorization, { resolvers: this.settings.dnsResolvers, timeoutMs: this.settings.dnsWaitMs ?? DEFAULT_DNS_WAIT_MS });
      return;
    }
    if (challenge.type === "tls-alpn-01") {
      this.alpnChallenges.set(name, alpnChallengeCertificate(name, keyAuthorization));
    } else {
      this.challenges.set(offered.token, keyAuthorization);
    }
    await this.onChallengesChange();
  }

  /**
   * Takes the answer down once the CA is done, whatever the outcome
   * (acme-client calls this in a `finally`). acme-client only debug-logs an
   * error thrown here, so a failing DNS hook is logged here.
   */
  private async withdraw(challenge: AcmeChallenge, authz: AcmeClient.Authorization, offered: { type: string; token: string }, keyAuthorization: string) {
    const name = authz.identifier.value;
    if (challenge.type === "dns-01") {
      await runDnsHook(challenge.hook, "remove", dnsRecordName(name), keyAuthorization).catch((error: Error) =>
        log.error("DNS hook could not remove the challenge record", { host: name, reason: error.message }),
      );
      return;
    }
    if (challenge.type === "tls-alpn-01") this.alpnChallenges.delete(name);
    else this.challenges.delete(offered.token);
  }
}

/** Where a DNS-01 TXT record goes: a wildcard's authorization names its base domain (RFC 8555 §7.1.4, §8.4). */
function dnsRecordName(identifier: string): string {
  return `_acme-challenge.${identifier.replace(/^\*\./, "")}`;
}
