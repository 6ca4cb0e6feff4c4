// The HTTPS scenarios' certificate and their readiness probe.
import * as fs from "node:fs";
import * as path from "node:path";
import { closingRequest, parseResponse, type ParsedResponse } from "./http1-response.ts";
import { runToEnd } from "./procs.ts";

/** The host name every HTTPS target serves; it never resolves, clients connect to 127.0.0.1 and send it as SNI and Host. */
export const TLS_HOST = "bench.test";

export interface Certificate {
  cert: string;
  key: string;
  command: string[];
}

/**
 * A self-signed certificate for TLS_HOST. ECDSA P-256 by default: the key
 * type most sites get today and the one parachute's own fallback certificate
 * uses, so a handshake costs the same whichever certificate a server picks.
 */
export async function makeCertificate(dir: string, keyType: "ec" | "rsa"): Promise<Certificate> {
  const openssl = Bun.which("openssl");
  if (!openssl) throw new Error("openssl is not installed (needed for the HTTPS scenarios; BENCH_SCENARIOS without https,handshake,h2 skips them)");
  const cert = path.join(dir, `${TLS_HOST}.crt`);
  const key = path.join(dir, `${TLS_HOST}.key`);
  const keyArgs = keyType === "ec" ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] : ["-newkey", "rsa:2048"];
  const command = [openssl, "req", "-x509", ...keyArgs, "-nodes", "-days", "2", "-subj", `/CN=${TLS_HOST}`, "-addext", `subjectAltName=DNS:${TLS_HOST}`, "-keyout", key, "-out", cert];
  const result = await runToEnd("openssl", command, 30_000);
  if (result.code !== 0 || !fs.existsSync(cert)) throw new Error(`openssl failed:\n${result.stderr}`);
  return { cert, key, command };
}

export interface ProbeResult {
  response: ParsedResponse;
  /** The server closed the connection after answering a "Connection: close" request. */
  closed: boolean;
  /** Its response said "Connection: close" (RFC 9112 §9.6: SHOULD). */
  saidClose: boolean;
}

/**
 * One HTTP/1.1 request over a fresh TLS connection with SNI = host, the way
 * the handshake client sends it; waits up to 2 s after the response for the
 * server to close.
 */
export function probeTls(port: number, host: string, urlPath: string): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0);
    let finished = false;
    const timers: Timer[] = [];
    const finish = (closed: boolean, error?: Error) => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      const response = parseResponse(received);
      if (error || !response) return reject(error ?? new Error(`no HTTP response over TLS from 127.0.0.1:${port} (SNI ${host})`));
      resolve({ response, closed, saidClose: response.headers.get("connection")?.toLowerCase() === "close" });
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      tls: { serverName: host, rejectUnauthorized: false },
      socket: {
        open(socket) {
          socket.write(closingRequest(host, urlPath));
          timers.push(setTimeout(() => (socket.end(), finish(false)), 7000));
        },
        data(socket, chunk) {
          const wasComplete = parseResponse(received)?.complete;
          received = Buffer.concat([received, chunk]);
          // Answered: give the server 2 s to close, as the request asked.
          if (!wasComplete && parseResponse(received)?.complete) timers.push(setTimeout(() => (socket.end(), finish(false)), 2000));
        },
        close() {
          finish(true);
        },
        connectError(_socket, error) {
          finish(false, error);
        },
      },
    }).catch((error: Error) => finish(false, error));
  });
}
