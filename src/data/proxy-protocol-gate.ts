// The PROXY protocol on a listener (README "PROXY protocol"): a connection
// from a trusted sender must begin with a valid header, whose address then
// is the client's; one that does not (garbage, a bad header, nothing within
// the timeout) is closed, and only it. Peers outside the trusted ranges are
// served as if the option were off: their bytes are never read as a header,
// so they cannot claim another address.
import { log } from "../log.ts";
import { cidrContains, parseCidr, type Cidr } from "../proxy/cidr.ts";
import { normalizeClientIp } from "../proxy/headers.ts";
import { parseProxyHeader } from "./proxy-protocol.ts";
import type { SocketTransport } from "./transport.ts";

/** How long a trusted sender has to send the whole header (a balancer sends it at once, before any client byte). */
export const HEADER_TIMEOUT_MS = 10_000;

/** What the run options say: the trusted ranges, none meaning every sender. */
export interface ProxyProtocolPolicy {
  from: string[];
}

export class ProxyProtocolGate {
  private readonly ranges: Cidr[];

  constructor(policy: ProxyProtocolPolicy) {
    this.ranges = policy.from.map(parseCidr);
  }

  /** Whether a connection from `peer` must start with a header. */
  trusts(peer: string): boolean {
    return this.ranges.length === 0 || this.ranges.some((range) => cidrContains(range, peer));
  }

  /**
   * Reads the header off a new connection from `peer`, then hands the
   * connection on with the client's address (`pass` sets its events); the
   * bytes that came after the header in the same packet follow.
   */
  read(transport: SocketTransport, peer: string, pass: (clientAddress: string) => void) {
    let received: Uint8Array | undefined;
    const refuse = (reason: string) => {
      clearTimeout(timer);
      log.debug("PROXY protocol header refused; connection closed", { peer, reason });
      transport.destroy();
    };
    const timer = setTimeout(() => refuse("no complete header in time"), HEADER_TIMEOUT_MS);
    transport.events = {
      data: (chunk) => {
        received = received ? Buffer.concat([received, chunk]) : chunk;
        const header = parseProxyHeader(received);
        if (header.kind === "incomplete") return;
        if (header.kind === "invalid") return refuse(header.reason);
        clearTimeout(timer);
        const rest = header.length < received.length ? received.subarray(header.length) : undefined;
        pass(header.source === undefined ? peer : normalizeClientIp(header.source));
        if (rest && !transport.closed) transport.events.data(rest);
      },
      drain() {},
      end: () => refuse("closed before the header"),
      close: () => clearTimeout(timer),
    };
  }
}
