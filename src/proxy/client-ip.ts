// `deploy --client-ip-header NAME` (README "Forwarding"): a proxy in front
// (Cloudflare's CF-Connecting-IP, Akamai's True-Client-IP) names the client in
// a header of its own. As in kamal-proxy, its value stands in for the inbound
// X-Forwarded-For: it is the client address of the log line, and with
// --forward-headers it is the X-Forwarded-For the target sees, followed by
// the peer's address.
import { isIP } from "node:net";
import type { Fields } from "../http/fields.ts";
import { log } from "../log.ts";

/** The named header's value when it is one IP address (trimmed); otherwise undefined, logged at debug level. */
export function clientIpFromHeader(fields: Fields, key: string): string | undefined {
  const value = fields.get(key);
  if (value === undefined) return undefined;
  const ip = value.trim();
  if (isIP(ip)) return ip;
  log.debug("Client IP header ignored: not an IP address", { header: key, value });
  return undefined;
}
