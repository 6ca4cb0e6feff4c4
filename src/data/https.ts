// The HTTPS listener: the TLS front on the public port, the certificates it
// chooses from by SNI, and the loopback HTTP/2 server. A new certificate
// takes effect at the next handshake; open connections keep theirs.
import { createSecureContext, type SecureContext } from "node:tls";
import { log } from "../log.ts";
import { certificateHostsFor } from "../tls/certificates.ts";
import { H2Server, type H2Certificate } from "./h2-server.ts";
import type { Http1Server } from "./http1-server.ts";
import type { Pipeline } from "./pipeline.ts";
import type { ProxyProtocolGate } from "./proxy-protocol-gate.ts";
import { TlsFront } from "./tls-front.ts";

/** A replaced HTTP/2 server keeps running this long: connections relayed just before the swap may still be in their handshake. */
const OLD_SERVER_GRACE_MS = 2_000;

interface HostCertificate extends H2Certificate {
  context: SecureContext;
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
  private h2: H2Server | undefined;
  /** The certificate set the HTTP/2 server holds; an unchanged set keeps it (and its connections). */
  private h2Certificates = "[]";

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
      h2Port: () => this.h2!.port,
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
    this.h2 = this.serveH2([]);
    try {
      this.front.start();
    } catch (error) {
      void this.h2.stop(true);
      throw error;
    }
  }

  /** Takes a new certificate set; the next handshakes use it. Synchronous: a deploy that returns has its certificate served. */
  update(entries: H2Certificate[]) {
    const next = new Map<string, HostCertificate>();
    for (const entry of entries) {
      const host = entry.host.toLowerCase();
      const current = this.hosts.get(host);
      if (current && current.cert === entry.cert && current.key === entry.key) {
        next.set(host, current);
        continue;
      }
      try {
        next.set(host, { host, cert: entry.cert, key: entry.key, context: createSecureContext({ cert: entry.cert, key: entry.key }) });
      } catch (error) {
        log.error("Cannot load the HTTPS certificate; keeping the previous one", { host, error: (error as Error).message });
        if (current) next.set(host, current);
      }
    }
    this.hosts = next;

    const valid = [...next.values()].map(({ host, cert, key }) => ({ host, cert, key }));
    const certificates = JSON.stringify(valid.map((e) => [e.host, e.cert, e.key]).sort());
    if (certificates !== this.h2Certificates) {
      const previous = this.h2;
      try {
        this.h2 = this.serveH2(valid);
        this.h2Certificates = certificates;
        // A graceful stop counts connections still in their handshake as idle: a moment first.
        if (previous) setTimeout(() => void previous.stop(false), OLD_SERVER_GRACE_MS);
      } catch (error) {
        log.error("Cannot reload HTTPS certificates for HTTP/2; keeping the previous set", { error: (error as Error).message });
      }
    }
    log.info("HTTPS certificates loaded", { hosts: entries.map((e) => e.host) });
  }

  async stop(force: boolean) {
    this.front.stop(force);
    await this.h2?.stop(force);
  }
}
