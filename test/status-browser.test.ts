// The status page in a real browser (README "Status page"): Debian's headless
// Chromium driven by puppeteer-core. The page shows the services, their
// targets and states; a redeploy shows up live, without a reload; the charts
// fill in from real traffic; it needs nothing from another origin and fits a
// phone's width. Screenshots go to test-artifacts/.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { startBackend, type Backend } from "./support/backend.ts";
import { freePort, Proxy, tempDir } from "./support/proxy.ts";
import { statusUrl } from "./support/status.ts";

setDefaultTimeout(60_000);

// The page's globals, as the functions run in the browser use them (the project's TypeScript has no DOM library).
declare const document: {
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
  querySelectorAll(selector: string): { length: number };
  documentElement: { scrollWidth: number };
};
declare const window: { innerWidth: number; loadedOnce?: number };

const ARTIFACTS = path.resolve(import.meta.dir, "../test-artifacts");

/**
 * Debian's chromium. Outside CI a machine without it skips this file
 * (scripts/test-tools.sh warns); in CI a missing browser is an error, so the
 * browser test can never pass by being skipped.
 */
function chromium(): string | undefined {
  const found = Bun.which("chromium") ?? (fs.existsSync("/usr/bin/chromium") ? "/usr/bin/chromium" : undefined);
  if (!found && process.env.CI) throw new Error("chromium is required when CI is set (scripts/test-tools.sh installs it)");
  if (!found) console.warn("warning: chromium is missing: the status page browser test is skipped (apt-get install chromium)");
  return found;
}

const executablePath = chromium();

describe.skipIf(!executablePath)("the status page in Chromium", () => {
  let proxy: Proxy;
  let statusPort: number;
  let browser: Browser;
  let page: Page;
  const backends: Backend[] = [];
  /** Every URL the page asked for. */
  const requested: string[] = [];

  beforeAll(async () => {
    statusPort = await freePort();
    proxy = await Proxy.start({ args: ["--workers", "1", "--status-port", String(statusPort)] });
    for (const name of ["web-1", "web-2", "api-1"]) backends.push(startBackend(name));
    const deploy = (service: string, target: Backend, more: string[] = []) =>
      proxy.cli(["deploy", service, "--target", target.address, "--health-check-interval", "200ms", ...more]).then((r) => expect(r.code).toBe(0));
    await deploy("web", backends[0]!, ["--host", "web.test", "--drain-timeout", "20s"]);
    await deploy("api", backends[2]!, ["--host", "api.test", "--path-prefix", "/v1"]);
    browser = await puppeteer.launch({
      executablePath,
      headless: true,
      userDataDir: tempDir("chromium-"),
      // As root (CI), Chromium runs only without its sandbox; /dev/shm may be small in containers.
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"],
    });
    page = await browser.newPage();
    page.on("request", (r) => void requested.push(r.url()));
    await page.setViewport({ width: 1280, height: 900 });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.stop();
    for (const b of backends) await b.stop();
  });

  const targetState = (service: string, address: string) =>
    page.$eval(`[data-service="${service}"] [data-target="${address}"]`, (row) => row.getAttribute("data-target-state")).catch(() => null);

  test("it shows every service, its routes, targets and states, and goes live", async () => {
    await page.goto(statusUrl(statusPort, "/", "localhost"), { waitUntil: "load" });
    await page.waitForSelector('#live[data-live="live"]', { timeout: 10_000 });
    await page.waitForSelector('[data-service="web"]');
    expect(await page.$$eval("[data-service]", (els) => els.map((e) => e.getAttribute("data-service")))).toEqual(["api", "web"]);
    expect(await targetState("web", backends[0]!.address)).toBe("healthy");
    expect(await targetState("api", backends[2]!.address)).toBe("healthy");
    const webText = await page.$eval('[data-service="web"]', (e) => (e as unknown as { innerText: string }).innerText);
    expect(webText).toContain("web.test");
    expect(webText).toContain("GET /up returned 200");
    expect(webText).toContain("running");
    expect(await page.$eval('[data-service="api"] .routes', (e) => e.textContent)).toContain("/v1");
  });

  /** How many points the longest line of a chart of the web service has. */
  const chartPoints = (chart: string) =>
    page.$$eval(`[data-service="web"] [data-chart="${chart}"] polyline`, (lines) => Math.max(0, ...lines.map((l) => new Set(l.getAttribute("points")!.split(" ")).size)));

  test("the charts fill in from real traffic while the page is open", async () => {
    // Traffic until the charts draw a line (a point every 5 s), one request in five a 5xx.
    const until = Date.now() + 30_000;
    for (let sent = 0; Date.now() < until && (await chartPoints("requests")) < 2; sent++) {
      const res = await proxy.fetch(sent % 5 === 0 ? "/status/500" : "/ok", { host: "web.test" });
      await res.arrayBuffer();
      await Bun.sleep(20);
    }
    expect(await chartPoints("requests")).toBeGreaterThanOrEqual(2);
    expect(await chartPoints("errors")).toBeGreaterThanOrEqual(2);
    expect(await chartPoints("latency")).toBeGreaterThanOrEqual(2);
    expect(await page.$$eval('[data-service="web"] [data-chart="latency"] polyline', (l) => l.length)).toBe(2); // p50 and p99
    const caption = await page.$eval('[data-service="web"] [data-chart="requests"] figcaption b', (e) => e.textContent);
    expect(caption).toMatch(/\/s$/);
    expect(caption).not.toBe("0.00/s");
  });

  test("a redeploy shows up live, without a reload: the new target, then the old one draining", async () => {
    await page.evaluate(() => (window.loadedOnce = 1));
    const deploysShown = () => page.$$eval('[data-service="web"] [data-history="deploy"]', (rows) => rows.length);
    expect(await deploysShown()).toBe(1);
    const [oldTarget, newTarget] = [backends[0]!, backends[1]!];
    // A request in flight on the old target keeps it draining while we look.
    const slow = proxy.fetch("/slow?ms=6000", { host: "web.test" }).then((r) => r.text());
    await Bun.sleep(200);
    const redeploy = proxy.cli(["deploy", "web", "--target", newTarget.address, "--host", "web.test", "--health-check-interval", "200ms", "--drain-timeout", "20s"]);
    await page.waitForFunction(
      (service, address) => document.querySelector(`[data-service="${service}"] [data-target="${address}"]`)?.getAttribute("data-target-state") === "healthy",
      { timeout: 15_000 },
      "web",
      newTarget.address,
    );
    await page.waitForFunction(
      (address) => document.querySelector(`[data-service="web"] [data-target="${address}"]`)?.getAttribute("data-target-state") === "draining",
      { timeout: 5_000 },
      oldTarget.address,
    );
    expect(await page.$eval('[data-service="web"] [data-in-flight]', (e) => Number(e.textContent))).toBeGreaterThanOrEqual(1);
    await page.screenshot({ path: path.join(ARTIFACTS, "status-page.png"), fullPage: true });
    expect(await slow).toBe("slow from web-1");
    expect((await redeploy).code).toBe(0);
    await page.waitForFunction((address) => !document.querySelector(`[data-service="web"] [data-target="${address}"]`), { timeout: 10_000 }, oldTarget.address);
    // The redeploy is in the history, newest first.
    await page.waitForFunction(() => document.querySelectorAll('[data-service="web"] [data-history="deploy"]').length === 2, { timeout: 5_000 });
    expect(await page.$eval('[data-service="web"] [data-history]', (row) => (row as unknown as { innerText: string }).innerText)).toContain(`${oldTarget.address} → ${newTarget.address}`);
    // Same document all along: the marker set before the redeploy is still there.
    expect(await page.evaluate(() => window.loadedOnce)).toBe(1);
  });

  test("a stopped service shows as stopped, with its message, live", async () => {
    expect((await proxy.cli(["stop", "api", "--message", "back at noon"])).code).toBe(0);
    await page.waitForSelector('[data-service="api"][data-service-state="stopped"]', { timeout: 5_000 });
    expect(await page.$eval('[data-service="api"] .badge', (e) => e.textContent)).toBe("stopped: back at noon");
    expect((await proxy.cli(["resume", "api"])).code).toBe(0);
    await page.waitForSelector('[data-service="api"][data-service-state="running"]', { timeout: 5_000 });
  });

  test("it fits a phone's width", async () => {
    await page.setViewport({ width: 390, height: 844, deviceScaleFactor: 2, isMobile: true });
    await page.waitForSelector('[data-service="web"]');
    const { scrollWidth, innerWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
    expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
    await page.screenshot({ path: path.join(ARTIFACTS, "status-page-phone.png"), fullPage: true });
  });

  test("it asked for nothing from another origin", () => {
    const origin = new URL(statusUrl(statusPort, "/", "localhost")).origin;
    expect(requested.length).toBeGreaterThanOrEqual(3); // the page, its script, its style (and the event stream)
    expect(requested.filter((url) => new URL(url).origin !== origin)).toEqual([]);
  });
});
