// Small helpers shared by the end-to-end suites.
import { expect } from "bun:test";
import type { CliResult, Proxy } from "./proxy.ts";

/** What the test backend's default route answers. */
export interface Echo {
  backend: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  bodyBytes: number;
}

/** Runs `parachute deploy SERVICE ...args` and fails the test (showing the output) unless it succeeds. */
export async function deployOk(proxy: Proxy, service: string, args: string[]): Promise<CliResult> {
  const result = await proxy.cli(["deploy", service, ...args]);
  if (result.code !== 0) throw new Error(`deploy ${service} failed (${result.code}):\n${result.stderr}${result.stdout}`);
  return result;
}

/** Runs `parachute remove SERVICE` and fails the test unless it succeeds. */
export async function removeOk(proxy: Proxy, service: string): Promise<void> {
  const result = await proxy.cli(["remove", service]);
  if (result.code !== 0) throw new Error(`remove ${service} failed (${result.code}):\n${result.stderr}${result.stdout}`);
}

/** Fetches through the proxy and parses the backend's echo; fails unless the status is 200. */
export async function echoVia(proxy: Proxy, pathAndQuery: string, host: string, init: RequestInit = {}): Promise<Echo> {
  const res = await proxy.fetch(pathAndQuery, { ...init, host });
  const text = await res.text();
  expect(res.status, `GET ${pathAndQuery} Host: ${host} answered ${res.status}: ${text.slice(0, 200)}`).toBe(200);
  return JSON.parse(text) as Echo;
}

/** The path and raw query from an absolute URL, without any re-encoding. */
export function rawPathAndQuery(url: string): string {
  if (url.startsWith("/")) return url; // a bare request target (no usable Host)
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start === -1 ? "/" : url.slice(start);
}

/** Which backend answered, or the status when it was not a 200. */
export async function whoAnswers(proxy: Proxy, pathAndQuery: string, host: string): Promise<string | number> {
  const res = await proxy.fetch(pathAndQuery, { host });
  if (res.status !== 200) {
    await res.body?.cancel();
    return res.status;
  }
  const backend = res.headers.get("x-backend");
  const text = await res.text();
  return backend ?? (JSON.parse(text) as Echo).backend;
}

/** Parsed `parachute list --json`. */
export async function listServices(proxy: Proxy): Promise<{ name: string; hosts: string[]; pathPrefixes?: string[] }[]> {
  const result = await proxy.cli(["list", "--json"]);
  if (result.code !== 0) throw new Error(`list failed (${result.code}):\n${result.stderr}`);
  const parsed = JSON.parse(result.stdout) as unknown;
  const services = Array.isArray(parsed) ? parsed : (parsed as { services: unknown[] }).services;
  return services as { name: string; hosts: string[]; pathPrefixes?: string[] }[];
}
