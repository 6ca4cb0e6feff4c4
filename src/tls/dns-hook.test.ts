import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { dnsHookProblem, runDnsHook } from "./dns-hook.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-dns-hook-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function hook(name: string, body: string, mode = 0o755): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}`, { mode });
  return file;
}

test("the hook gets its action, the record name and the value as arguments", async () => {
  const out = path.join(dir, "args");
  await runDnsHook(hook("ok", `printf '%s|' "$@" > '${out}'\n`), "add", "_acme-challenge.example.com", "v-A1_b");
  expect(fs.readFileSync(out, "utf8")).toBe("add|_acme-challenge.example.com|v-A1_b|");
});

test("a failing hook is an error with its exit code and stderr, else its stdout, else 'no output'", async () => {
  const stderr = hook("stderr", "echo out; echo 'zone not found' >&2; exit 4\n");
  await expect(runDnsHook(stderr, "add", "_acme-challenge.a.test", "v")).rejects.toThrow(`DNS hook ${stderr} add _acme-challenge.a.test failed (exit 4): zone not found`);
  const stdout = hook("stdout", "echo 'HTTP 403'; exit 1\n");
  await expect(runDnsHook(stdout, "remove", "_acme-challenge.a.test", "v")).rejects.toThrow(`DNS hook ${stdout} remove _acme-challenge.a.test failed (exit 1): HTTP 403`);
  const silent = hook("silent", "exit 1\n");
  await expect(runDnsHook(silent, "add", "_acme-challenge.a.test", "v")).rejects.toThrow("failed (exit 1): no output");
  const killed = hook("killed", "kill -TERM $$\n");
  await expect(runDnsHook(killed, "add", "_acme-challenge.a.test", "v")).rejects.toThrow("failed (killed by SIGTERM)");
});

test("a hook that cannot be started (gone since the deploy) is an error naming it", async () => {
  const gone = path.join(dir, "gone");
  await expect(runDnsHook(gone, "add", "_acme-challenge.a.test", "v")).rejects.toThrow(`DNS hook ${gone} cannot run`);
});

test("dnsHookProblem: missing, a directory, not executable; an executable file is fine", () => {
  expect(dnsHookProblem(path.join(dir, "nope"))).toBe(`--tls-dns-hook ${path.join(dir, "nope")}: no such file`);
  expect(dnsHookProblem(dir)).toBe(`--tls-dns-hook ${dir} is not a file`);
  const plain = hook("plain", "exit 0\n", 0o644);
  expect(dnsHookProblem(plain)).toBe(`--tls-dns-hook ${plain} is not executable`);
  expect(dnsHookProblem(hook("fine", "exit 0\n"))).toBeUndefined();
});
