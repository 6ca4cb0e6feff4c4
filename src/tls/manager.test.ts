// The certificate manager's on-demand path, with a stand-in for the CA (the
// real CA is pebble, in test/tls-on-demand.test.ts): nothing is ordered
// before the URL says yes, a cached certificate the service allowed is served
// without asking, and orders wait in the queue.
import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { defaultOptions } from "../service/options.ts";
import { Service } from "../service/service.ts";
import type { AcmeIssuer } from "./acme.ts";
import { CertificateCache } from "./certificates.ts";
import { CertificateManager } from "./manager.ts";
import { OnDemandGate, type Verdict } from "./on-demand.ts";
import { OrderQueue } from "./order-queue.ts";
import { selfSignedCertificate } from "./self-signed.ts";

const DIRECTORY = "https://ca.test/directory";
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A CA that issues self-signed certificates when told to, and counts orders. */
function fakeIssuer() {
  const pending: (() => void)[] = [];
  const issuer = {
    challenges: new Map<string, string>(),
    alpnChallenges: new Map(),
    onChallengesChange: () => Promise.resolve(),
    ordered: [] as string[],
    running: 0,
    most: 0,
    directoryFor: () => DIRECTORY,
    issue(host: string) {
      issuer.ordered.push(host);
      issuer.running++;
      issuer.most = Math.max(issuer.most, issuer.running);
      return new Promise<{ cert: string; key: string }>((resolve) =>
        pending.push(() => {
          issuer.running--;
          resolve(selfSignedCertificate(host, 30));
        }),
      );
    },
    /** Lets the oldest running order finish. */
    finishOne() {
      pending.shift()?.();
    },
  };
  return issuer;
}

function setup(answer: (host: string) => Verdict, concurrency = 4) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-manager-"));
  dirs.push(dir);
  const cache = new CertificateCache(dir);
  const issuer = fakeIssuer();
  const asked: string[] = [];
  const gate = new OnDemandGate(100, async (_service, host) => {
    asked.push(host);
    return answer(host);
  });
  const manager = new CertificateManager(cache, issuer as unknown as AcmeIssuer, undefined, undefined, gate, new OrderQueue(concurrency));
  const service = new Service("saas", defaultOptions({ tls: true, tlsOnDemandUrl: "/allow" }), []);
  manager.sync([service], new Map(), () => service);
  return { manager, issuer, asked, cache, service };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await Bun.sleep(1);
  expect(check()).toBe(true);
};

test("a refused host is never ordered; an allowed one is ordered once, however many handshakes ask", async () => {
  const { manager, issuer, asked } = setup((host) => (host === "ok.test" ? { allowed: true } : { allowed: false, reason: "403", asked: true }));
  expect(await manager.requestOnDemand("no.test", "saas")).toBe(false);
  expect(issuer.ordered).toEqual([]);
  const answers = await Promise.all([manager.requestOnDemand("ok.test", "saas"), manager.requestOnDemand("ok.test", "saas")]);
  expect(answers).toEqual([true, true]);
  expect(asked).toEqual(["no.test", "ok.test"]);
  expect(issuer.ordered).toEqual(["ok.test"]);
  const issued = manager.waitFor("ok.test", 5_000);
  issuer.finishOne();
  expect(await issued).toBe(true);
  expect(manager.has("ok.test")).toBe(true);
  // Has a certificate: not asked again.
  expect(await manager.requestOnDemand("ok.test", "saas")).toBe(true);
  expect(asked).toEqual(["no.test", "ok.test"]);
  // Unknown service (removed meanwhile): refused without asking.
  expect(await manager.requestOnDemand("other.test", "gone")).toBe(false);
});

test("orders wait in the queue: at most `concurrency` run at once", async () => {
  const { manager, issuer } = setup(() => ({ allowed: true }), 2);
  const hosts = ["a.test", "b.test", "c.test", "d.test", "e.test"];
  for (const host of hosts) expect(await manager.requestOnDemand(host, "saas")).toBe(true);
  // Queued hosts count as being issued: their handshakes wait.
  expect(manager.issuingHosts().sort()).toEqual(hosts);
  await until(() => issuer.running === 2);
  while (issuer.ordered.length < hosts.length || issuer.running > 0) {
    issuer.finishOne();
    await Bun.sleep(1);
  }
  await until(() => hosts.every((h) => manager.has(h)));
  expect(issuer.most).toBe(2);
});

test("a cached certificate is served without asking only to the service that allowed it", async () => {
  const { manager, issuer, asked, cache } = setup(() => ({ allowed: false, reason: "403", asked: true }));
  // Valid for longer than the 30 days before expiry at which it would be renewed.
  const pair = selfSignedCertificate("cached.test", 90);
  cache.save("cached.test", DIRECTORY, pair.cert, pair.key);
  // Not recorded as allowed by saas: asked, and refused.
  expect(await manager.requestOnDemand("cached.test", "saas")).toBe(false);
  expect(asked).toEqual(["cached.test"]);
  cache.save("mine.test", DIRECTORY, pair.cert, pair.key);
  cache.recordAllowed("mine.test", DIRECTORY, "saas");
  expect(await manager.requestOnDemand("mine.test", "saas")).toBe(true);
  expect(manager.has("mine.test")).toBe(true);
  expect(asked).toEqual(["cached.test"]);
  expect(issuer.ordered).toEqual([]);
});
