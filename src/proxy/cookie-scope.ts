// `--scope-cookie-paths` (README "Routing"): a service mounted under a path
// prefix gets its cookies scoped to that prefix, as kamal-proxy does: the
// prefix is put in front of each Set-Cookie's Path, for cookies of the
// request's host (no Domain, or that host).

/** Where a response's cookies are scoped: the matched path prefix and the request's host without its port. */
export interface CookieScope {
  prefix: string;
  host: string;
}

/** One Set-Cookie value with its Path under the scope's prefix; a cookie for another domain is left as it is. */
export function scopeSetCookie(value: string, scope: CookieScope): string {
  const parts = value.split(";");
  let path = "";
  let pathIndex = -1;
  for (let i = 1; i < parts.length; i++) {
    const [name = "", ...rest] = parts[i]!.split("=");
    const attribute = name.trim().toLowerCase();
    const attributeValue = rest.join("=").trim();
    if (attribute === "domain" && attributeValue.replace(/^\./, "").toLowerCase() !== scope.host.toLowerCase()) return value;
    if (attribute === "path") {
      path = attributeValue;
      pathIndex = i;
    }
  }
  const rest = path.replace(/^\/+|\/+$/g, "");
  const scoped = ` Path=${scope.prefix === "/" ? `/${rest}` : rest ? `${scope.prefix}/${rest}` : scope.prefix}`;
  if (pathIndex === -1) parts.push(scoped);
  else parts[pathIndex] = scoped;
  return parts.join(";");
}
