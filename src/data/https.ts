// The HTTPS listener: the TLS front on the public port, the certificates it
// chooses from by SNI, and the loopback HTTP/2 servers. A new certificate
// takes effect at the next handshake; open connections keep theirs.
//
// HTTP/1.1 handshakes take one SecureContext per host, made once. A
// Bun.serve takes its whole certificate list when it starts, so a new
// certificate means a new server: the hosts are split among servers of at
// most H2_SHARD_HOSTS each, and a change rebuilds only the server holding the
// host. With 1,000 on-demand hosts an issuance then restarts a server of 64
// certificates (about 3 ms) rather than one of 1,000 (about 50 ms):
// docs/benchmarks.md "On-demand TLS at 1,000 hosts".
import { createSecureContext, type SecureContext } from "node:tls";
import { log } from "../log.ts";
import { certificateHostsFor } from "../tls/certificates.ts";
import { noteActivity } from "./memory.ts";
import { H2Server, type H2Certificate } from "./h2-server.ts";
import type { Http1Server } from "./http1-server.ts";
import type { Pipeline } from "./pipeline.ts";
import type { ProxyProtocolGate } from "./proxy-protocol-gate.ts";
import { TlsFront } from "./tls-front.ts";

/** A replaced HTTP/2 server keeps running this long: connections relayed just before the swap may still be in their handshake. */
const OLD_SERVER_GRACE_MS = 2_000;

/** Hosts per loopback HTTP/2 server. */
export const H2_SHARD_HOSTS = 64;

/** One loopback HTTP/2 server and the hosts whose certificates it holds. */
interface Shard {
  hosts: Set<string>;
  server: H2Server;
}

interface HostCertificate extends H2Certificate {
  context: SecureContext;
  shard: Shard;
}

export interface HttpsOptions {
  port: number;
  hostname: string | undefined;
  /** An inherited listening socket (see ListenOptions). */
  fd?: number;
  proxyProtocol?: ProxyProtocolGate;
  pipeline: Pipeline;
  http1: Http1Server;
  /** Served to names no service has, and to clients without SNI. */
  fallback: { cert: string; key: string };
  /** Waits (bounded) for the certificate of a name still being issued; false refuses the handshake. */
  admit(serverName: string | undefined): Promise<boolean>;
  /** The TLS-ALPN-01 challenge certificate for a name, while its challenge is open. */
  alpnChallenge(serverName: string): { cert: string; key: string } | undefined;
}

/** The entry for an SNI name: exact, then a wildcard one level up. */
function lookup<T>(map: Map<string, T>, name: string): T | undefined {
  for (const host of certificateHostsFor(name)) {
    const found = map.get(host);
    if (found) return found;
  }
  return undefined;
}

export class HttpsListener {
  readonly front: TlsFront;
  private hosts = new Map<string, HostCertificate>();
  private readonly fallbackContext: SecureContext;
  /** The server for names without a certificate (and clients without SNI): the fallback certificate only. */
  private fallbackH2: H2Server | undefined;
  private readonly shards = new Set<Shard>();

  constructor(private readonly options: HttpsOptions) {
    this.fallbackContext = createSecureContext(options.fallback);
    this.front = new TlsFront({
      port: options.port,
      hostname: options.hostname,
      fd: options.fd,
      proxyProtocol: options.proxyProtocol,
      admit: options.admit,
      context: (name) => (name ? lookup(this.hosts, name)?.context : undefined) ?? this.fallbackContext,
      acmeContext: (name) => {
        // Made per validation: a CA opens a few connections per challenge, and each challenge has its own certificate.
        const challenge = options.alpnChallenge(name);
        try {
          return challenge ? createSecureContext(challenge) : undefined;
        } catch (error) {
          log.error("Cannot load the TLS-ALPN-01 challenge certificate", { host: name, error: (error as Error).message });
          return undefined;
        }
      },
      h2Port: (name) => ((name ? lookup(this.hosts, name)?.shard.server : undefined) ?? this.fallbackH2!).port,
      serve: (transport, clientAddress) => options.http1.accept(transport, "https", clientAddress),
    });
  }

  private serveH2(certificates: H2Certificate[]): H2Server {
    return new H2Server(certificates, this.options.fallback, this.options.pipeline, (port) => this.front.clientAddress(port));
  }

  get boundPort(): number {
    return this.front.port;
  }

  get fd(): number | undefined {
    return this.front.fd;
  }

  /** Binds the public port (errors surface at start-up, like the HTTP port's). */
  start() {
    this.fallbackH2 = this.serveH2([]);
    try {
      this.front.start();
    } catch (error) {
      void this.fallbackH2.stop(true);
      throw error;
    }
  }

  /** Takes a new certificate set; the next handshakes use it. Synchronous: a deploy that returns has its certificate served. */
  update(entries: H2Certificate[]) {
    const next = new Map<string, HostCertificate>();
    const changed = new Set<Shard>();
    const loaded: string[] = [];
    for (const entry of entries) {
      const host = entry.host.toLowerCase();
      const current = this.hosts.get(host);
      if (current && current.cert === entry.cert && current.key === entry.key) {
        next.set(host, current);
        continue;
      }
      let context: SecureContext;
      try {
        context = createSecureContext({ cert: entry.cert, key: entry.key });
      } catch (error) {
        log.error("Cannot load the HTTPS certificate; keeping the previous one", { host, error: (error as Error).message });
        if (current) next.set(host, current);
        continue;
      }
      const shard = current?.shard ?? this.shardWithRoom();
      shard.hosts.add(host);
      changed.add(shard);
      next.set(host, { host, cert: entry.cert, key: entry.key, context, shard });
      loaded.push(host);
    }
    const removed = [...this.hosts.keys()].filter((host) => !next.has(host));
    for (const host of removed) {
      const shard = this.hosts.get(host)!.shard;
      shard.hosts.delete(host);
      changed.add(shard);
    }
    this.hosts = next;
    for (const shard of changed) this.rebuild(shard);
    if (loaded.length || removed.length) log.info("HTTPS certificates loaded", { hosts: loaded, removed, total: next.size });
  }

  /** A server with room for one more host: the first one that has some, or a new one. */
  private shardWithRoom(): Shard {
    for (const shard of this.shards) if (shard.hosts.size < H2_SHARD_HOSTS) return shard;
    const shard: Shard = { hosts: new Set(), server: this.fallbackH2! };
    this.shards.add(shard);
    return shard;
  }

  /** Replaces a shard's server with one holding its hosts' certificates now (or none, once it has no hosts). */
  private rebuild(shard: Shard) {
    const previous = shard.server;
    if (shard.hosts.size === 0) {
      this.shards.delete(shard);
    } else {
      const entries = [...shard.hosts].map((host) => this.hosts.get(host)!);
      try {
        shard.server = this.serveH2(entries.map(({ host, cert, key }) => ({ host, cert, key })));
      } catch (error) {
        log.error("Cannot reload HTTPS certificates for HTTP/2; keeping the previous set", { error: (error as Error).message });
        return;
      }
    }
    if (previous === this.fallbackH2) return;
    // A graceful stop counts connections still in their handshake as idle: a moment first.
    // A stopped server's TLS contexts are native memory that only a collection frees:
    // it counts as activity for memory.ts.
    setTimeout(() => void previous.stop(false).then(noteActivity), OLD_SERVER_GRACE_MS);
  }

  async stop(force: boolean) {
    this.front.stop(force);
    await Promise.all([this.fallbackH2?.stop(force), ...[...this.shards].map((s) => s.server.stop(force))]);
  }
}
