// The routing table: host → path prefix → service (README "Routing"). A Router is an
// immutable snapshot built from the services; every change builds a new one
// and swaps it in, so a request always sees one consistent table.

export interface Routable {
  readonly name: string;
  readonly hosts: readonly string[]; // [] = catch-all
  readonly pathPrefixes: readonly string[];
}

export interface Route<S extends Routable> {
  prefix: string;
  service: S;
}

const CATCH_ALL = "";

function byLongestPrefix<S extends Routable>(a: Route<S>, b: Route<S>) {
  return b.prefix.length - a.prefix.length;
}

/** Does `prefix` cover `path` on whole segments? (`/api` covers `/api` and `/api/x`, not `/apiary`.) */
export function prefixMatches(prefix: string, path: string): boolean {
  if (prefix === "/") return true;
  return path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 47 /* / */);
}

/**
 * Whether a Host header value is well formed (RFC 9110 §7.2: uri-host [":" port]):
 * a bracketed IPv6 address or a reg-name of unreserved, sub-delim and
 * percent-encoded characters. Empty is allowed (a target without authority).
 */
export function validHostHeader(value: string): boolean {
  return /^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::\d{0,5})?$/.test(value);
}

/** Normalises a Host header: lower case, no port, no trailing dot. */
export function normalizeHost(header: string | null): string {
  if (!header) return "";
  let host = header.toLowerCase();
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(":");
  if (colon !== -1) host = host.slice(0, colon);
  return host.endsWith(".") ? host.slice(0, -1) : host;
}

export class Router<S extends Routable> {
  private readonly exact = new Map<string, Route<S>[]>();
  private readonly wildcard = new Map<string, Route<S>[]>();
  private readonly catchAll: Route<S>[] = [];

  constructor(services: Iterable<S>) {
    for (const service of services) {
      for (const host of service.hosts.length ? service.hosts : [CATCH_ALL]) {
        const routes = this.routesFor(host, true)!;
        for (const prefix of service.pathPrefixes) routes.push({ prefix, service });
        routes.sort(byLongestPrefix);
      }
    }
  }

  private routesFor(host: string, create = false): Route<S>[] | undefined {
    if (host === CATCH_ALL) return this.catchAll;
    const [table, key] = host.startsWith("*.") ? [this.wildcard, host.slice(2)] : [this.exact, host];
    let routes = table.get(key);
    if (!routes && create) table.set(key, (routes = []));
    return routes;
  }

  /**
   * Only the most specific host level that has services is searched: an exact
   * host with no matching path is a 404, it never falls through to a wildcard.
   */
  match(host: string, path: string): Route<S> | undefined {
    for (const route of this.hostLevel(host)) {
      if (prefixMatches(route.prefix, path)) return route;
    }
    return undefined;
  }

  /** The routes of the most specific host level that has services for `host`. */
  private hostLevel(host: string): Route<S>[] {
    const exact = this.exact.get(host);
    if (exact) return exact;
    const dot = host.indexOf(".");
    return (dot === -1 ? undefined : this.wildcard.get(host.slice(dot + 1))) ?? this.catchAll;
  }

  /** The services that answer for `host` (on some path), at the level `match` searches. */
  servicesFor(host: string): S[] {
    return [...new Set(this.hostLevel(host).map((r) => r.service))];
  }

  /** Whether any service answers for this host (on some path): exact, wildcard or catch-all. */
  servesHost(host: string): boolean {
    if (this.exact.has(host) || this.catchAll.length > 0) return true;
    const dot = host.indexOf(".");
    return dot !== -1 && this.wildcard.has(host.slice(dot + 1));
  }

  /** The service other than `name` that already owns one of the (host, prefix) pairs, if any. */
  conflict(candidate: Routable): S | undefined {
    for (const host of candidate.hosts.length ? candidate.hosts : [CATCH_ALL]) {
      const routes = this.routesFor(host) ?? [];
      for (const route of routes) {
        if (route.service.name !== candidate.name && candidate.pathPrefixes.includes(route.prefix)) return route.service;
      }
    }
    return undefined;
  }
}
