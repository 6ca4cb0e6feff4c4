// A real ACME server for tests: Debian's pebble with pebble-challtestsrv as
// its DNS (every name resolves to 127.0.0.1), validating HTTP-01 against the
// proxy's real HTTP port.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { tempDir, waitFor } from "./proxy.ts";

/**
 * Whether the TLS suites can run. Outside CI a machine without pebble skips
 * them (scripts/test-tools.sh warns); in CI a missing tool is an error, so
 * the TLS suites can never pass by being skipped.
 */
export function pebbleAvailable(): boolean {
  const available = Boolean(Bun.which("pebble") && Bun.which("pebble-challtestsrv") && Bun.which("openssl"));
  if (!available && process.env.CI) throw new Error("pebble, pebble-challtestsrv and openssl are required when CI is set (scripts/test-tools.sh installs them)");
  return available;
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = server.port!;
  await server.stop(true);
  return port;
}

async function run(cmd: string[], cwd: string) {
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed: ${await new Response(proc.stderr).text()}`);
}

/** Resolves once 127.0.0.1:`port` accepts a TCP connection. */
function waitForPort(port: number, timeoutMs = 10_000) {
  return waitFor(
    `port ${port} to open`,
    async () => {
      const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      socket.end();
      return true;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

export interface Pebble {
  dir: string;
  /** The ACME directory URL, for PARACHUTE_ACME_DIRECTORY. */
  directory: string;
  /** CA that signed pebble's own HTTPS API, for PARACHUTE_ACME_CA. */
  apiCaFile: string;
  /** Fetches pebble's current issuing root (PEM), to verify issued certificates. */
  rootPem(): Promise<string>;
  /** Requests pebble has served, by counting log lines that mention new orders. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts pebble validating HTTP-01 on `httpPort` (the proxy's HTTP port).
 * `env` may set e.g. PEBBLE_VA_ALWAYS_VALID or a short certificate validity.
 */
export async function startPebble(httpPort: number, env: Record<string, string> = {}): Promise<Pebble> {
  const dir = tempDir("parachute-pebble-");
  const [acmePort, mgmtPort, dnsPort, challMgmtPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  await run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=parachute test CA"], dir);
  await run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "pebble-key.pem", "-out", "pebble.csr", "-subj", "/CN=localhost"], dir);
  fs.writeFileSync(path.join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  await run(["openssl", "x509", "-req", "-in", "pebble.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "pebble-cert.pem", "-days", "30", "-extfile", "ext.cnf"], dir);
  fs.writeFileSync(
    path.join(dir, "pebble-config.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: path.join(dir, "pebble-cert.pem"),
        privateKey: path.join(dir, "pebble-key.pem"),
        httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const procs: Subprocess[] = [];
  let output = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += new TextDecoder().decode(chunk);
  };
  const dns = Bun.spawn(
    ["pebble-challtestsrv", "-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${challMgmtPort}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
    { cwd: dir, stdout: "pipe", stderr: "pipe" },
  );
  procs.push(dns);
  void collect(dns.stdout);
  void collect(dns.stderr);
  await waitForPort(challMgmtPort);
  const pebble = Bun.spawn(["pebble", "-config", "pebble-config.json", "-dnsserver", `127.0.0.1:${dnsPort}`, "-strict=false"], {
    cwd: dir,
    env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  procs.push(pebble);
  void collect(pebble.stdout);
  void collect(pebble.stderr);
  await waitForPort(acmePort);
  await waitForPort(mgmtPort);
  const apiCaFile = path.join(dir, "ca.pem");
  return {
    dir,
    directory: `https://127.0.0.1:${acmePort}/dir`,
    apiCaFile,
    async rootPem() {
      const res = await fetch(`https://127.0.0.1:${mgmtPort}/roots/0`, { tls: { ca: fs.readFileSync(apiCaFile, "utf8") } });
      return res.text();
    },
    output: () => output,
    async stop() {
      for (const proc of procs) proc.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited));
    },
  };
}
