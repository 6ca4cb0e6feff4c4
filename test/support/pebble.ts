// A real ACME server for tests: Debian's pebble with pebble-challtestsrv as
// its DNS (every name resolves to 127.0.0.1), validating HTTP-01 against the
// proxy's real HTTP port, TLS-ALPN-01 against the port given as `tlsPort`,
// and DNS-01 against the TXT records set through challtestsrv's management API.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { freePort, tempDir, waitFor } from "./proxy.ts";

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

async function run(cmd: string[], cwd: string) {
  const proc = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const code = await proc.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed: ${await new Response(proc.stderr).text()}`);
}

/** A pebble process that exited before its port opened; `portTaken` when the cause was a port bound in between. */
class StartFailure extends Error {
  constructor(
    message: string,
    readonly portTaken: boolean,
  ) {
    super(message);
  }
}

/**
 * Resolves once 127.0.0.1:`port` accepts a TCP connection. Fails at once if
 * `proc` exits first, or after 10 s, with the processes' output (and stops
 * them, so that a failed start leaves nothing running).
 */
async function waitForPort(name: string, proc: Subprocess, port: number, finalOutput: () => Promise<string>) {
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  try {
    await waitFor(
      `${name} to open port ${port}`,
      async () => {
        if (exited()) return true;
        const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
        socket.end();
        return true;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  } catch (error) {
    throw new StartFailure(`${(error as Error).message}; its output:\n${await finalOutput()}`, false);
  }
  if (!exited()) return;
  const text = await finalOutput();
  throw new StartFailure(`${name} exited (${proc.exitCode ?? proc.signalCode}) before port ${port} opened:\n${text}`, /address already in use/i.test(text));
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
  /** pebble-challtestsrv's DNS server (`127.0.0.1:port`), which pebble resolves names with. */
  dnsServer: string;
  /** pebble-challtestsrv's management API (`/set-txt`, `/clear-txt`, …). */
  challengeServerUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts pebble validating HTTP-01 on `httpPort` (the proxy's HTTP port) and
 * TLS-ALPN-01 on `ports.tlsPort` (the proxy's HTTPS port; a free port if not
 * given). `env` may set e.g. PEBBLE_VA_ALWAYS_VALID or a short certificate validity.
 */
export async function startPebble(httpPort: number, env: Record<string, string> = {}, ports: { tlsPort?: number } = {}): Promise<Pebble> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startPebbleOnce(httpPort, env, ports.tlsPort);
    } catch (error) {
      if (!(error instanceof StartFailure && error.portTaken && attempt < 3)) throw error;
    }
  }
}

async function startPebbleOnce(httpPort: number, env: Record<string, string>, givenTlsPort: number | undefined): Promise<Pebble> {
  const dir = tempDir("parachute-pebble-");
  const [acmePort, mgmtPort, dnsPort, challMgmtPort, freeTlsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const tlsPort = givenTlsPort ?? freeTlsPort;
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
        tlsPort,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  const procs: Subprocess[] = [];
  let output = "";
  const collecting: Promise<void>[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += new TextDecoder().decode(chunk);
  };
  const spawn = (cmd: string[], processEnv?: Record<string, string | undefined>) => {
    const proc = Bun.spawn(cmd, { cwd: dir, env: processEnv, stdout: "pipe", stderr: "pipe" });
    procs.push(proc);
    collecting.push(collect(proc.stdout), collect(proc.stderr));
    return proc;
  };
  const stop = async () => {
    for (const proc of procs) proc.kill("SIGKILL");
    await Promise.all(procs.map((p) => p.exited));
  };
  const finalOutput = async () => {
    await stop();
    await Promise.all(collecting);
    return output;
  };
  const dns = spawn(["pebble-challtestsrv", "-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${challMgmtPort}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
  await waitForPort("pebble-challtestsrv", dns, challMgmtPort, finalOutput);
  const pebble = spawn(["pebble", "-config", "pebble-config.json", "-dnsserver", `127.0.0.1:${dnsPort}`, "-strict=false"], {
    ...process.env,
    PEBBLE_VA_NOSLEEP: "1",
    PEBBLE_WFE_NONCEREJECT: "0",
    ...env,
  });
  await waitForPort("pebble", pebble, acmePort, finalOutput);
  await waitForPort("pebble", pebble, mgmtPort, finalOutput);
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
    dnsServer: `127.0.0.1:${dnsPort}`,
    challengeServerUrl: `http://127.0.0.1:${challMgmtPort}`,
    stop,
  };
}
