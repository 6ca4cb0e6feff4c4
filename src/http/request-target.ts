// The request-target of RFC 9112 §3.2, split into what routing and the
// target need. The path and query go to the target as sent, except that `.`
// and `..` segments are resolved first (RFC 3986 §5.2.4): `/api/../admin`
// must be routed, and forwarded, as `/admin`.

export interface SplitTarget {
  /** The authority of an absolute-form target (`http://host:port/p`), which replaces Host. */
  authority: string | undefined;
  path: string;
  /** The query with its `?`, or "". */
  query: string;
}

/** Splits origin-form and absolute-form targets; undefined for `*` and authority-form (CONNECT). */
export function splitRequestTarget(target: string): SplitTarget | undefined {
  let authority: string | undefined;
  let rest = target;
  if (target.charCodeAt(0) !== 47 /* / */) {
    const match = /^https?:\/\/([^/?#]*)/i.exec(target);
    if (!match) return undefined;
    authority = match[1]!;
    rest = target.slice(match[0].length);
    if (!rest.startsWith("/")) rest = `/${rest}`; // `http://host?q` is `/?q`
  }
  const hash = rest.indexOf("#");
  if (hash !== -1) rest = rest.slice(0, hash);
  const q = rest.indexOf("?");
  const path = q === -1 ? rest : rest.slice(0, q);
  return { authority, path: removeDotSegments(path), query: q === -1 ? "" : rest.slice(q) };
}

/** A `.` or `..` segment, also when percent-encoded (`%2e`), as browsers' URL parsers read them. */
function dotSegment(segment: string): 0 | 1 | 2 {
  const s = segment.length > 2 ? segment.toLowerCase().replaceAll("%2e", ".") : segment;
  return s === "." ? 1 : s === ".." ? 2 : 0;
}

/** Resolves `.` and `..` segments; the rest of the path is kept byte for byte (empty segments too). */
export function removeDotSegments(path: string): string {
  if (!path.includes(".") && !/%2e/i.test(path)) return path;
  const input = path.split("/");
  const output: string[] = [];
  for (let i = 0; i < input.length; i++) {
    const kind = dotSegment(input[i]!);
    const last = i === input.length - 1;
    if (kind === 0) output.push(input[i]!);
    else {
      if (kind === 2 && output.length > 1) output.pop();
      // A trailing dot segment leaves a directory: `/a/b/..` is `/a/`.
      if (last) output.push("");
    }
  }
  const joined = output.join("/");
  return joined.startsWith("/") ? joined : `/${joined}`;
}
