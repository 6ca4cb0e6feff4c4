// DNS-01 (RFC 8555 §8.4) through the operator's hook (README "TLS"): an
// executable that parachute runs as `CMD add <fqdn> <value>` and
// `CMD remove <fqdn> <value>`, the certbot/acme.sh manual-hook pattern, so
// that any DNS provider is a few lines of shell and no provider SDK is in the
// binary (examples/dns-hooks/). After `add`, parachute polls DNS until the
// TXT record is visible before it tells the CA to validate.
import * as fs from "node:fs";
import { Resolver } from "node:dns/promises";
import { log } from "../log.ts";

/** How long one run of the hook may take before it is killed and the issuance fails. */
const HOOK_TIMEOUT_MS = 120_000;
/** Time between two look-ups of the TXT record while waiting for it. */
const POLL_INTERVAL_MS = 1_000;
/** One DNS query's own timeout. */
const QUERY_TIMEOUT_MS = 3_000;

/** What is wrong with a hook path, as the deploy error; undefined when it is an executable file. */
export function dnsHookProblem(hook: string): string | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(hook);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return `--tls-dns-hook ${hook}: ${code === "ENOENT" ? "no such file" : (code ?? (error as Error).message)}`;
  }
  if (!stat.isFile()) return `--tls-dns-hook ${hook} is not a file`;
  try {
    fs.accessSync(hook, fs.constants.X_OK);
  } catch {
    return `--tls-dns-hook ${hook} is not executable`;
  }
  return undefined;
}

/**
 * Runs the hook once. A non-zero exit, a kill at the timeout, or a hook that
 * cannot be started is an error carrying its stderr (its stdout if stderr is
 * empty), which the issuance fails with and the log shows.
 */
export async function runDnsHook(hook: string, action: "add" | "remove", fqdn: string, value: string): Promise<void> {
  let proc: ReturnType<typeof Bun.spawn<"ignore", "pipe", "pipe">>;
  try {
    proc = Bun.spawn([hook, action, fqdn, value], { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: HOOK_TIMEOUT_MS, killSignal: "SIGKILL" });
  } catch (error) {
    throw new Error(`DNS hook ${hook} cannot run: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code === 0 && !proc.signalCode) return;
  const how = proc.signalCode ? `killed by ${proc.signalCode}${proc.signalCode === "SIGKILL" ? ` (timeout ${HOOK_TIMEOUT_MS / 1000}s?)` : ""}` : `exit ${code}`;
  throw new Error(`DNS hook ${hook} ${action} ${fqdn} failed (${how}): ${stderr.trim() || stdout.trim() || "no output"}`);
}

export interface PropagationSettings {
  /** Resolvers to ask (`host` or `host:port`); none: the zone's authoritative name servers. */
  resolvers?: string[];
  /** Give up waiting after this long (the CA is then asked to validate anyway). */
  timeoutMs: number;
}

/**
 * Waits until `value` is among the TXT records of `fqdn`, as the resolvers
 * see it: by default the zone's own name servers, which have a new record
 * as soon as the provider has published it, and do not cache the "no such
 * record" answer that a recursive resolver asked too early would keep for
 * the zone's negative TTL (RFC 2308). True once seen; false after the
 * timeout, logged, and the CA validates anyway: its own view is what counts.
 */
export async function waitForTxt(fqdn: string, value: string, settings: PropagationSettings): Promise<boolean> {
  const started = Date.now();
  const servers = settings.resolvers?.length ? settings.resolvers : await authoritativeServers(fqdn);
  let last = "";
  while (Date.now() - started < settings.timeoutMs) {
    // A new resolver for each look-up: one resolver keeps answers in its
    // c-ares query cache, the "not found" too, and would never see the record.
    const resolver = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: 1 });
    if (servers.length) resolver.setServers(servers);
    try {
      const records = await resolver.resolveTxt(fqdn);
      if (records.some((chunks) => chunks.join("") === value)) return true;
      last = `${records.length} other TXT record(s)`;
    } catch (error) {
      last = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    }
    await Bun.sleep(POLL_INTERVAL_MS);
  }
  log.warn("DNS-01 record not visible yet; asking the CA to validate anyway", { fqdn, resolvers: servers.join(",") || "system", last, waited_ms: Date.now() - started });
  return false;
}

/**
 * The addresses of the name servers of the zone `fqdn` is in: the NS records
 * of the nearest enclosing name that has some. Empty when none is found (the
 * system's resolvers are asked then).
 */
async function authoritativeServers(fqdn: string): Promise<string[]> {
  const system = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: 2 });
  for (let name = fqdn; name.includes("."); name = name.slice(name.indexOf(".") + 1)) {
    const names = await system.resolveNs(name).catch(() => [] as string[]);
    if (!names.length) continue;
    const addresses = await Promise.all(names.map((ns) => system.resolve4(ns).catch(() => [] as string[])));
    const flat = addresses.flat();
    if (flat.length) return flat;
  }
  return [];
}
