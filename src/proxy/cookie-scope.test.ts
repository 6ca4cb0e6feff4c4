import { expect, test } from "bun:test";
import { scopeSetCookie } from "./cookie-scope.ts";

const scope = { prefix: "/app", host: "example.com" };

test("the prefix goes in front of the cookie's Path; a cookie without one gets the prefix", () => {
  expect(scopeSetCookie("session=abc; Path=/; HttpOnly", scope)).toBe("session=abc; Path=/app; HttpOnly");
  expect(scopeSetCookie("session=abc; path=/admin/; Secure", scope)).toBe("session=abc; Path=/app/admin; Secure");
  expect(scopeSetCookie("session=abc", scope)).toBe("session=abc; Path=/app");
  expect(scopeSetCookie("a=b=c; HttpOnly", scope)).toBe("a=b=c; HttpOnly; Path=/app");
});

test("cookies for the request's host are scoped; those for another domain are left alone", () => {
  expect(scopeSetCookie("s=1; Domain=example.com; Path=/", scope)).toBe("s=1; Domain=example.com; Path=/app");
  expect(scopeSetCookie("s=1; Domain=.Example.com", scope)).toBe("s=1; Domain=.Example.com; Path=/app");
  expect(scopeSetCookie("s=1; Domain=other.com; Path=/", scope)).toBe("s=1; Domain=other.com; Path=/");
});

test("under the root prefix a path stays what it was", () => {
  expect(scopeSetCookie("s=1; Path=/x", { prefix: "/", host: "example.com" })).toBe("s=1; Path=/x");
});
