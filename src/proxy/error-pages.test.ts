import { afterEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { builtinPage, ERROR_PAGE_HEADERS, errorPage, loadCustomPages } from "./error-pages.ts";

const dirs: string[] = [];
function tempDir(files: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parachute-pages-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

test("each status the proxy produces has its title and detail", () => {
  const cases: [number, string, string][] = [
    [404, "404 Not Found", "No service is configured for this address."],
    [413, "413 Payload Too Large", "The request body is larger than this service accepts."],
    [502, "502 Bad Gateway", "The application did not answer properly."],
    [503, "503 Service Unavailable", "The service is temporarily unavailable. Please try again shortly."],
    [504, "504 Gateway Timeout", "The application took too long to answer."],
    [400, "400 Bad Request", "The request is malformed."],
    [505, "505 HTTP Version Not Supported", "This server speaks HTTP/1.0, HTTP/1.1 and HTTP/2."],
  ];
  for (const [status, title, detail] of cases) {
    const page = builtinPage(status);
    expect(page).toStartWith("<!DOCTYPE html>");
    expect(page).toContain(`<title>${title}</title>`);
    expect(page).toContain(`<h1>${title}</h1><p>${detail}</p>`);
  }
});

test("a status without its own text is an Error with no detail", () => {
  expect(builtinPage(418)).toContain("<h1>418 Error</h1><p></p>");
});

test("a message replaces the detail, HTML-escaped", () => {
  const page = builtinPage(503, `Back <b>soon</b> & "later" 'ok'`);
  expect(page).toContain("<p>Back &#60;b&#62;soon&#60;/b&#62; &#38; &#34;later&#34; &#39;ok&#39;</p>");
  expect(page).not.toContain("<b>");
  expect(builtinPage(503, "")).toContain("<p>The service is temporarily unavailable. Please try again shortly.</p>");
});

test("errorPage renders the built-in page as UTF-8 bytes", () => {
  expect(text(errorPage(404))).toBe(builtinPage(404));
  expect(text(errorPage(503, { message: "café" }))).toBe(builtinPage(503, "café"));
  expect(errorPage(503, { message: "é" }).byteLength).toBe(new TextEncoder().encode(builtinPage(503, "é")).byteLength);
});

test("kamal-proxy's {{ .Message }} is replaced like {{message}}", () => {
  const pages = new Map([[503, "<p>{{ .Message }}</p><p>{{.Message}}</p><p>{{message}}</p>"]]);
  expect(new TextDecoder().decode(errorPage(503, { pages, message: "back <soon>" }))).toBe("<p>back &#60;soon&#62;</p><p>back &#60;soon&#62;</p><p>back &#60;soon&#62;</p>");
});

test("a custom page is used for its status only, every {{message}} replaced, escaped", () => {
  const pages = new Map([[503, "<h1>Down</h1><p>{{message}}</p><!-- {{message}} -->"]]);
  expect(text(errorPage(503, { pages, message: "a<b" }))).toBe("<h1>Down</h1><p>a&#60;b</p><!-- a&#60;b -->");
  expect(text(errorPage(503, { pages }))).toBe("<h1>Down</h1><p></p><!--  -->");
  expect(text(errorPage(502, { pages, message: "x" }))).toBe(builtinPage(502, "x"));
  expect(text(errorPage(404, { pages: new Map([[404, ""]]) }))).toBe(""); // an empty custom page is still the custom page
});

test("error pages are HTML and never cached", () => {
  expect(ERROR_PAGE_HEADERS).toEqual([
    ["Content-Type", "text/html; charset=utf-8"],
    ["Cache-Control", "no-store"],
  ]);
});

test("loadCustomPages reads <4xx|5xx>.html files and ignores the rest", () => {
  const dir = tempDir({ "503.html": "down {{message}}", "404.html": "nothing here", "200.html": "ok", "600.html": "x", "503.htm": "no", "readme.txt": "hi", "5030.html": "no" });
  fs.mkdirSync(path.join(dir, "sub"));
  const pages = loadCustomPages(dir);
  expect([...pages.entries()].sort()).toEqual([
    [404, "nothing here"],
    [503, "down {{message}}"],
  ]);
});

test("an empty directory gives no pages", () => {
  expect(loadCustomPages(tempDir()).size).toBe(0);
});

test("a missing directory, or a file, cannot be used: the message names it", () => {
  const missing = path.join(tempDir(), "nope");
  expect(() => loadCustomPages(missing)).toThrow(`error pages directory "${missing}" cannot be used: no such directory`);
  const dir = tempDir({ "file.html": "x" });
  const file = path.join(dir, "file.html");
  expect(() => loadCustomPages(file)).toThrow(`error pages directory "${file}" cannot be used: not a directory`);
});
