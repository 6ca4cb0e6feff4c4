// On-demand TLS (README "On-demand TLS"): a service deployed with
// --tls-on-demand-url gets a certificate for a host at the host's first
// handshake, once the URL says the host may have one. The gate below is what
// stands between a handshake for an unknown name and the CA: names that are
// not DNS names are refused, asks are rate-limited per service, a refusal is
// remembered for a while, and one ask runs per host at a time. Nothing is
// ordered unless the answer is 200.
import type { Router } from "../routing/router.ts";
import type { Service } from "../service/service.ts";

/** How long the URL has to answer (kamal-proxy's check timeout). */
export const ASK_TIMEOUT_MS = 2_000;
/** A refused host is refused again without asking for this long, so a client retrying in a loop asks once. */
export const REFUSAL_MEMORY_MS = 10_000;
/** How much of a refusal's body goes into the log. */
const LOGGED_BODY = 256;

/** `asked`: the URL gave the refusal (worth a warning), rather than the gate itself (a scan: debug only). */
export type Verdict = { allowed: true } | { allowed: false; reason: string; asked: boolean };

/** The on-demand service that answers for `host`, if the service routing picks for it has --tls-on-demand-url. */
export function onDemandServiceFor(router: Router<Service>, host: string): Service | undefined {
  return router.servicesFor(host).find((s) => s.options.tls && s.options.tlsOnDemandUrl);
}

/** A DNS name a CA could issue for: labels of letters, digits and hyphens, at least two of them (RFC 1123 §2.1). */
export function issuableName(host: string): boolean {
  return host.length <= 253 && /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(host);
}

/** The request that asks about `host`: the URL itself, or a path on one of the service's targets (with the host as Host header). */
export function askRequest(service: Service, host: string): { url: URL; headers: Record<string, string> } | undefined {
  const configured = service.options.tlsOnDemandUrl!;
  let url: URL;
  let headers: Record<string, string> = {};
  if (configured.startsWith("/")) {
    const target = service.pick(true, undefined, false).target;
    if (!target) return undefined;
    url = new URL(`http://${target.address}${configured}`);
    // Apps that check the Host header see the name being asked about, not the target's address.
    headers = { host };
  } else {
    url = new URL(configured);
  }
  url.searchParams.set("host", host);
  return { url, headers };
}

/** Asks the service's --tls-on-demand-url whether `host` may have a certificate: 200 allows, anything else (or no answer in time) refuses. */
export async function askOnDemand(service: Service, host: string, timeoutMs = ASK_TIMEOUT_MS): Promise<Verdict> {
  const request = askRequest(service, host);
  if (!request) return { allowed: false, reason: "no healthy target to ask", asked: true };
  try {
    // A redirect is the answer, not a pointer: following it could turn a refusal into someone else's 200.
    const response = await fetch(request.url, { headers: request.headers, redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
    if (response.status === 200) {
      void response.body?.cancel();
      return { allowed: true };
    }
    const body = await bodyStart(response);
    return { allowed: false, reason: `${request.url.origin}${request.url.pathname} answered ${response.status}${body ? `: ${body}` : ""}`, asked: true };
  } catch (error) {
    const name = (error as Error).name;
    const why = name === "TimeoutError" || name === "AbortError" ? `no answer within ${timeoutMs} ms` : (error as Error).message;
    return { allowed: false, reason: `cannot ask ${request.url.origin}${request.url.pathname}: ${why}`, asked: true };
  }
}

/** The first LOGGED_BODY bytes of a refusal's body, for the log; the rest is not read. */
async function bodyStart(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  try {
    while (bytes < LOGGED_BODY) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      bytes += value.byteLength;
    }
  } catch {
    // What arrived is enough for the log.
  } finally {
    void reader.cancel().catch(() => {});
  }
  return new TextDecoder().decode(Buffer.concat(chunks).subarray(0, LOGGED_BODY));
}

/** Up to `rate` takes per second, and `rate` at once after a quiet second. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = rate;
    this.last = now();
  }

  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export type Asker = (service: Service, host: string) => Promise<Verdict>;

export class OnDemandGate {
  private readonly buckets = new Map<string, TokenBucket>();
  /** Refused hosts, and until when a refusal stands. */
  private readonly refused = new Map<string, number>();
  private readonly asking = new Map<string, Promise<Verdict>>();

  constructor(
    /** Asks per second per service. */
    private readonly rate: number,
    private readonly ask: Asker = askOnDemand,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether `service` may have a certificate for `host`: asked at most once at a time per host, within the service's rate. */
  check(service: Service, host: string): Promise<Verdict> {
    if (!issuableName(host)) return Promise.resolve({ allowed: false, reason: "not a name a CA issues certificates for", asked: false });
    const until = this.refused.get(host);
    if (until !== undefined) {
      if (until > this.now()) return Promise.resolve({ allowed: false, reason: "refused a moment ago", asked: false });
      this.refused.delete(host);
    }
    const running = this.asking.get(host);
    if (running) return running;
    if (!this.bucket(service.name).take()) return Promise.resolve({ allowed: false, reason: "too many hosts asked about; not asked", asked: false });
    const asked = this.ask(service, host).then((verdict) => {
      this.asking.delete(host);
      if (!verdict.allowed) this.remember(host);
      return verdict;
    });
    this.asking.set(host, asked);
    return asked;
  }

  private bucket(service: string): TokenBucket {
    let bucket = this.buckets.get(service);
    if (!bucket) this.buckets.set(service, (bucket = new TokenBucket(this.rate, this.now)));
    return bucket;
  }

  /** Remembers a refusal; the expired ones go first, so the map holds at most what the rate lets in over the memory's length. */
  private remember(host: string) {
    const now = this.now();
    for (const [name, until] of this.refused) if (until <= now) this.refused.delete(name);
    this.refused.set(host, now + REFUSAL_MEMORY_MS);
  }
}
