// Tools for the TLS end-to-end suites: curl over HTTPS with --resolve (so the
// SNI and Host are real names while everything connects to 127.0.0.1), the
// certificate a TLS handshake presents for a name, and a throwaway CA made
// with openssl for custom certificates (good, expired, not covering a host).
import * as fs from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import type { Proxy } from "./proxy.ts";

export interface CurlResult {
  /** curl's exit code: 0 ok, 60 certificate verification failed, 35 handshake failed, … */
  exit: number;
  status: number;
  /** "2" for HTTP/2, "1.1" for HTTP/1.1. */
  httpVersion: string;
  body: string;
  /** Response headers, names lower-cased. */
  headers: Record<string, string>;
  stderr: string;
}

export interface CurlOptions {
  /** PEM file to trust; without it, `insecure` must be set for HTTPS. */
  cacert?: string;
  insecure?: boolean;
  /** Connect `host:port` to 127.0.0.1 (curl --resolve). */
  resolve?: { host: string; port: number }[];
  headers?: Record<string, string>;
  http1?: boolean;
  timeoutSeconds?: number;
}

const MARK = "\n--curl-write-out--";

/** Runs curl for one URL; never follows redirects. */
export async function curl(url: string, options: CurlOptions = {}): Promise<CurlResult> {
  const args = ["curl", "-sS", "-D", "-", "--max-time", String(options.timeoutSeconds ?? 10), "-w", `${MARK}%{http_code} %{http_version}`];
  if (options.cacert) args.push("--cacert", options.cacert);
  if (options.insecure) args.push("-k");
  if (options.http1) args.push("--http1.1");
  for (const r of options.resolve ?? []) args.push("--resolve", `${r.host}:${r.port}:127.0.0.1`);
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push("-H", `${name}: ${value}`);
  args.push(url);
  const proc = Bun.spawn(args, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, stderr, exit] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const at = out.lastIndexOf(MARK);
  const [code, version] = (at === -1 ? "0 0" : out.slice(at + MARK.length)).split(" ");
  const response = at === -1 ? out : out.slice(0, at);
  // -D - puts the response head before the body (redirects are not followed: one head).
  const split = response.indexOf("\r\n\r\n");
  const head = split === -1 ? "" : response.slice(0, split);
  const body = split === -1 ? response : response.slice(split + 4);
  const headers: Record<string, string> = {};
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { exit, status: Number(code), httpVersion: version ?? "", body, headers, stderr };
}

/** `https://host:port/path` fetched with curl, resolving host to 127.0.0.1 and trusting `cacert`. */
export function curlHttps(host: string, port: number, pathAndQuery: string, cacert: string, extra: CurlOptions = {}): Promise<CurlResult> {
  return curl(`https://${host}:${port}${pathAndQuery}`, { cacert, resolve: [{ host, port }], ...extra });
}

export interface PeerCertificate {
  serial: string;
  subjectCN: string;
  notBefore: string;
  fingerprint256: string;
  /** Did the chain verify against the given CA for this name? */
  authorized: boolean;
  authorizationError: string | null;
  alpn: string | false;
}

/** Completes a TLS handshake with 127.0.0.1:port for `servername` and reports the certificate presented. */
export function peerCertificate(port: number, servername: string, ca: string, timeoutMs = 5000): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca, rejectUnauthorized: false, ALPNProtocols: ["h2", "http/1.1"] }, () => {
      clearTimeout(timer);
      const cert = socket.getPeerCertificate();
      const subject = cert.subject as unknown as Record<string, string> | undefined;
      resolve({
        serial: String(cert.serialNumber ?? "").toUpperCase(),
        subjectCN: subject?.CN ?? "",
        notBefore: String(cert.valid_from ?? ""),
        fingerprint256: String(cert.fingerprint256 ?? ""),
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : null,
        alpn: socket.alpnProtocol ?? false,
      });
      socket.end();
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`TLS handshake with 127.0.0.1:${port} (${servername}) timed out`));
    }, timeoutMs);
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function openssl(args: string[], cwd: string) {
  const proc = Bun.spawn(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`openssl ${args.join(" ")} failed (${code}): ${stderr}`);
}

export interface TestCa {
  dir: string;
  /** The CA certificate, for --cacert / tls.ca. */
  certFile: string;
  pem: string;
  /**
   * Issues a leaf for `names` (the first is the CN; all are DNS SANs), written
   * to `<file>.pem` and `<file>.key` in the CA's directory. `validity` is a
   * number of days from now, or explicit dates like `20200101000000Z`.
   */
  issue(file: string, names: string[], validity?: number | { start: string; end: string }): Promise<{ cert: string; key: string }>;
  /** A fresh private key unrelated to any certificate. */
  strayKey(file: string): Promise<string>;
}

export async function createTestCa(dir: string): Promise<TestCa> {
  fs.mkdirSync(dir, { recursive: true });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=parachute tls-test CA"], dir);
  // `openssl ca` is the only openssl 3.0 way to pick both validity dates (for expired certificates).
  fs.writeFileSync(
    path.join(dir, "ca.cnf"),
    "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n",
  );
  fs.writeFileSync(path.join(dir, "index.txt"), "");
  fs.writeFileSync(path.join(dir, "serial"), "1000\n");
  const certFile = path.join(dir, "ca.pem");
  return {
    dir,
    certFile,
    pem: fs.readFileSync(certFile, "utf8"),
    async issue(file, names, validity = 30) {
      await openssl(["req", ...ec, "-keyout", `${file}.key`, "-out", `${file}.csr`, "-subj", `/CN=${names[0]}`], dir);
      fs.writeFileSync(path.join(dir, `${file}.ext`), `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\n`);
      const dates =
        typeof validity === "number" ? ["-days", String(validity)] : ["-startdate", validity.start, "-enddate", validity.end];
      await openssl(
        ["ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", `${file}.csr`, "-out", `${file}.pem`, "-extfile", `${file}.ext`, ...dates],
        dir,
      );
      return { cert: path.join(dir, `${file}.pem`), key: path.join(dir, `${file}.key`) };
    },
    async strayKey(file) {
      await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${file}.key`], dir);
      return path.join(dir, `${file}.key`);
    },
  };
}

/** The HTTPS port from the server's `Server started` line. */
export function httpsPortOf(logs: Record<string, unknown>[]): number {
  const started = [...logs].reverse().find((l) => l.msg === "Server started");
  return Number(started?.https_port ?? 0);
}

/**
 * Respawns a killed server (same state directory and ports) and waits for
 * the new process's own `Server started` line: `Proxy.spawn()` alone would
 * match the previous process's line, which is still in `proxy.logs`.
 */
export async function restart(proxy: Proxy): Promise<void> {
  await proxy.spawn();
  const pid = proxy.pid;
  const started = await proxy.waitForLog((l) => l.msg === "Server started" && l.pid === pid, 15_000);
  proxy.httpPort = Number(started.http_port);
}
