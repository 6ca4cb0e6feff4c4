// The health check parachute publishes for the load balancer in front of it
// (`run --publish-health-check`, README "Published health check"). Cloud load
// balancers probe an address without a Host header of the operator's choosing,
// so it is answered on every host, before routing:
//   /.parachute/health            200 while this proxy serves; 503 once it is
//                                 leaving (a graceful stop, or the old process
//                                 of an upgrade), so balancers move away first
//   /.parachute/<service>/health  200 while the service has a healthy target
import type { Service } from "../service/service.ts";

export const PUBLISHED_HEALTH_PREFIX = "/.parachute/";

const HEALTH_SUFFIX = "/health";

export interface HealthAnswer {
  status: 200 | 404 | 503;
  body: string;
}

/**
 * The answer for a path under PUBLISHED_HEALTH_PREFIX; undefined for any
 * other path there, which goes on to routing like every request.
 */
export function publishedHealth(path: string, leaving: boolean, service: (name: string) => Service | undefined): HealthAnswer | undefined {
  const rest = path.slice(PUBLISHED_HEALTH_PREFIX.length);
  if (rest === "health") return leaving ? { status: 503, body: "leaving\n" } : { status: 200, body: "OK\n" };
  if (!rest.endsWith(HEALTH_SUFFIX)) return undefined;
  const name = rest.slice(0, -HEALTH_SUFFIX.length);
  if (name === "" || name.includes("/")) return undefined;
  let found: Service | undefined;
  try {
    found = service(decodeURIComponent(name));
  } catch {
    // A malformed escape names no service.
  }
  if (!found) return { status: 404, body: `no service ${name}\n` };
  return found.targets.some((target) => target.health === "healthy") ? { status: 200, body: "OK\n" } : { status: 503, body: "no healthy target\n" };
}
