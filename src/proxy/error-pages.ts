// The one renderer for responses the proxy itself produces (README "Forwarding"). A
// service may bring its own `<status>.html` pages; they are read at deploy
// time, so serving them never touches the disk.
import * as fs from "node:fs";
import * as path from "node:path";

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  408: "Request Timeout",
  414: "URI Too Long",
  431: "Request Header Fields Too Large",
  501: "Not Implemented",
  505: "HTTP Version Not Supported",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Payload Too Large",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

const DETAILS: Record<number, string> = {
  400: "The request is malformed.",
  401: "This site needs a user name and password.",
  408: "The request took too long to arrive.",
  414: "The request target is too long.",
  431: "The request headers are too large.",
  501: "This server does not support the request's transfer coding.",
  505: "This server speaks HTTP/1.0, HTTP/1.1 and HTTP/2.",
  404: "No service is configured for this address.",
  405: "This server does not accept this method.",
  413: "The request body is larger than this service accepts.",
  502: "The application did not answer properly.",
  503: "The service is temporarily unavailable. Please try again shortly.",
  504: "The application took too long to answer.",
};

export type CustomPages = ReadonlyMap<number, string>;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function builtinPage(status: number, message?: string): string {
  const title = `${status} ${TITLES[status] ?? "Error"}`;
  const detail = escapeHtml(message || DETAILS[status] || "");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>body{font-family:system-ui,sans-serif;margin:0;display:grid;place-items:center;min-height:100vh;background:#f6f7f9;color:#1f2328}main{max-width:32rem;padding:2rem;text-align:center}h1{font-size:1.5rem}p{color:#57606a}</style>
</head><body><main><h1>${title}</h1><p>${detail}</p></main></body></html>
`;
}

/** Where a custom page takes the stop message: `{{message}}`, or kamal-proxy's Go template `{{ .Message }}`. */
const MESSAGE_PLACEHOLDER = /\{\{message\}\}|\{\{\s*\.Message\s*\}\}/g;

/** Renders the page for `status`: the service's own page if it has one, else the built-in page. */
export function errorPage(status: number, options: { message?: string; pages?: CustomPages } = {}): Uint8Array {
  const custom = options.pages?.get(status);
  const body = custom !== undefined ? custom.replace(MESSAGE_PLACEHOLDER, escapeHtml(options.message ?? "")) : builtinPage(status, options.message);
  return new TextEncoder().encode(body);
}

/** The headers every error page is sent with. */
export const ERROR_PAGE_HEADERS: [string, string][] = [
  ["Content-Type", "text/html; charset=utf-8"],
  ["Cache-Control", "no-store"],
];

/**
 * Loads `<status>.html` files from a directory. A missing or unreadable
 * directory is an error (the deploy fails and nothing changes).
 */
export function loadCustomPages(dir: string): Map<number, string> {
  let entries: string[];
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error("not a directory");
    entries = fs.readdirSync(dir);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (error as Error).message;
    throw new Error(`error pages directory "${dir}" cannot be used: ${reason}`);
  }
  const pages = new Map<number, string>();
  for (const entry of entries) {
    const match = /^([45]\d\d)\.html$/.exec(entry);
    if (match) pages.set(Number(match[1]), fs.readFileSync(path.join(dir, entry), "utf8"));
  }
  return pages;
}
