// The README's screenshot of the status page (docs/status-page.png): a live
// server with a few services, 50 s of traffic on 127.0.0.1, Debian's chromium.
// Run from the repository root: bun scripts/status-screenshot.ts
import puppeteer from "puppeteer-core";
import { startBackend } from "../test/support/backend.ts";
import { createTestCa } from "../test/support/tls-tools.ts";
import { freePort, Proxy, tempDir } from "../test/support/proxy.ts";
const statusPort = await freePort();
const proxy = await Proxy.start({
  args: ["--workers", "1", "--status-port", String(statusPort), "--https-port", String(await freePort())],
  env: { PARACHUTE_ACME_DIRECTORY: `http://127.0.0.1:${await freePort()}/directory`, PARACHUTE_ACME_RETRY: "1h" },
});
const b = ["web-1", "web-2", "web-3", "api-1"].map((n) => startBackend(n));
const ca = await createTestCa(tempDir("ca-"));
const leaf = await ca.issue("admin", ["admin.example.com"], 60);
await proxy.cli(["deploy", "web", "--target", b[0]!.address, "--target", b[1]!.address, "--host", "app.example.com"]);
await proxy.cli(["deploy", "admin", "--target", b[0]!.address, "--host", "admin.example.com", "--tls", "--tls-certificate-path", leaf.cert, "--tls-private-key-path", leaf.key]);
await proxy.cli(["deploy", "docs", "--target", b[1]!.address, "--host", "docs.example.com", "--tls"]);
await proxy.cli(["rollout", "deploy", "web", "--target", b[2]!.address]);
await proxy.cli(["rollout", "set", "web", "--percent", "10", "--list", "alice"]);
await proxy.cli(["deploy", "api", "--target", b[3]!.address, "--host", "api.example.com", "--path-prefix", "/v1"]);
await proxy.cli(["deploy", "api", "--target", "127.0.0.1:1", "--host", "api.example.com", "--path-prefix", "/v1", "--deploy-timeout", "2s"]);
const browser = await puppeteer.launch({ executablePath: "/usr/bin/chromium", headless: true, userDataDir: tempDir("c-"), args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const page = await browser.newPage();
await page.setViewport({ width: 1200, height: 800 });
await page.goto(`http://localhost:${statusPort}/`);
const until = Date.now() + 50_000;
let i = 0;
while (Date.now() < until) {
  const phase = Math.sin((Date.now() % 30_000) / 30_000 * Math.PI * 2);
  const host = i % 4 === 0 ? "api.example.com" : "app.example.com";
  const path = i % 4 === 0 ? "/v1/x" : Math.random() < 0.03 + 0.04 * Math.max(0, phase) ? "/status/502" : Math.random() < 0.1 ? "/slow?ms=40" : "/ok";
  await (await proxy.fetch(path, { host })).text().catch(() => "");
  i++;
  await Bun.sleep(8 + 10 * (1 + phase));
}
await proxy.cli(["pause", "api"]);
await Bun.sleep(1500);
await page.screenshot({ path: "docs/status-page.png", fullPage: true });
await browser.close();
await proxy.cli(["resume", "api"]);
await proxy.stop();
for (const x of b) await x.stop();
process.exit(0);
