// ACME HTTP-01 issuance with acme-client (README "TLS"). The proxy
// answers /.well-known/acme-challenge/ itself on its HTTP port; the account
// key and the account URL per directory persist under <state-dir>/certs.
import * as fs from "node:fs";
import https from "node:https";
import * as path from "node:path";
import type * as AcmeClient from "acme-client";
import { writePrivate } from "./certificates.ts";

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
}

export class AcmeIssuer {
  /** token → key authorization, served on the HTTP port while a challenge is open. */
  readonly challenges = new Map<string, string>();
  /** Resolves once every process that answers HTTP-01 challenges has the current set. */
  onChallengesChange: () => Promise<void> = () => Promise.resolve();
  private accountKey: Promise<Buffer> | undefined;
  /** One account registration per directory, shared by concurrent orders. */
  private readonly accounts = new Map<string, Promise<string>>();

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
      if (this.ca) acme.axios.defaults.httpsAgent = new https.Agent({ ca: this.ca });
      // acme-client retries network errors 5 times with growing delays (75 s in
      // all); our own backoff retries failed issuances, so fail faster here.
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
        writePrivate(file, key.toString());
        return key;
      }
    })();
    this.accountKey.catch(() => (this.accountKey = undefined));
    return this.accountKey;
  }

  /** The account URL at this directory, registering the account once if needed. */
  private accountUrl(directoryUrl: string, accountKey: Buffer): Promise<string> {
    let url = this.accounts.get(directoryUrl);
    if (!url) {
      const saved = this.accountUrls()[directoryUrl];
      url = saved
        ? Promise.resolve(saved)
        : (async () => {
            const acme = await this.acme();
            const client = new acme.Client({ directoryUrl, accountKey });
            await client.createAccount({
              termsOfServiceAgreed: true,
              ...(this.settings.email ? { contact: [`mailto:${this.settings.email}`] } : {}),
            });
            const created = client.getAccountUrl();
            this.saveAccountUrl(directoryUrl, created);
            return created;
          })();
      this.accounts.set(directoryUrl, url);
      url.catch(() => this.accounts.delete(directoryUrl));
    }
    return url;
  }

  private accountUrls(): Record<string, string> {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir, "account.json"), "utf8")).urls ?? {};
    } catch {
      return {};
    }
  }

  private saveAccountUrl(directory: string, url: string) {
    const urls = { ...this.accountUrls(), [directory]: url };
    writePrivate(path.join(this.dir, "account.json"), JSON.stringify({ urls }, null, 2));
  }

  /**
   * Orders a certificate for one host from one directory (see
   * `directoryFor`); resolves with its PEM chain and key.
   * An account the CA no longer knows (a reset test CA, a deleted account) is
   * forgotten and registered again once; a failure is explained in terms an
   * operator can act on.
   */
  async issue(host: string, directoryUrl: string): Promise<{ cert: string; key: string }> {
    try {
      return await this.order(host, directoryUrl);
    } catch (error) {
      if (!/accountDoesNotExist|Account .* not found/i.test((error as Error)?.message ?? "")) throw await this.explain(error, directoryUrl);
      this.forgetAccount(directoryUrl);
      try {
        return await this.order(host, directoryUrl);
      } catch (retryError) {
        throw await this.explain(retryError, directoryUrl);
      }
    }
  }

  private forgetAccount(directoryUrl: string) {
    this.accounts.delete(directoryUrl);
    const urls = this.accountUrls();
    delete urls[directoryUrl];
    writePrivate(path.join(this.dir, "account.json"), JSON.stringify({ urls }, null, 2));
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

  private async order(host: string, directoryUrl: string): Promise<{ cert: string; key: string }> {
    const accountKey = await this.account();
    const accountUrl = await this.accountUrl(directoryUrl, accountKey);
    const acme = await this.acme();
    const client = new acme.Client({ directoryUrl, accountKey, accountUrl });
    const [key, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] }, await acme.crypto.createPrivateEcdsaKey());
    const cert = await client.auto({
      csr,
      email: this.settings.email,
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      // The self-check would resolve the host through system DNS and port 80,
      // which is wrong behind NAT, split DNS or a non-standard port; the CA's
      // own validation is the check that counts.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        this.challenges.set(challenge.token, keyAuthorization);
        // The CA validates as soon as this returns: every worker must answer by then.
        await this.onChallengesChange();
      },
      challengeRemoveFn: async (_authz, challenge) => {
        this.challenges.delete(challenge.token);
      },
    });
    return { cert, key: key.toString() };
  }
}
