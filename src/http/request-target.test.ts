import { describe, expect, test } from "bun:test";
import { removeDotSegments, splitRequestTarget } from "./request-target.ts";

describe("splitRequestTarget", () => {
  test("origin-form: path and raw query as sent", () => {
    expect(splitRequestTarget("/a%20b//c?x=1&y=%2F")).toEqual({ authority: undefined, path: "/a%20b//c", query: "?x=1&y=%2F" });
  });
  test("absolute-form: the authority is taken out; an empty path is /", () => {
    expect(splitRequestTarget("http://App.test:8080/x?q")).toEqual({ authority: "App.test:8080", path: "/x", query: "?q" });
    expect(splitRequestTarget("https://a.test")).toEqual({ authority: "a.test", path: "/", query: "" });
    expect(splitRequestTarget("http://a.test?q=1")).toEqual({ authority: "a.test", path: "/", query: "?q=1" });
  });
  test("a fragment is not part of the target", () => {
    expect(splitRequestTarget("/p#frag")?.path).toBe("/p");
  });
  test("asterisk-form and authority-form are not routable", () => {
    expect(splitRequestTarget("*")).toBeUndefined();
    expect(splitRequestTarget("a.test:443")).toBeUndefined();
  });
});

describe("removeDotSegments (RFC 3986 §5.2.4)", () => {
  test.each([
    ["/api/../admin", "/admin"],
    ["/a/./b", "/a/b"],
    ["/a/b/..", "/a/"],
    ["/../../x", "/x"],
    ["/a/%2e%2E/b", "/b"],
    ["/a/%2e/b", "/a/b"],
    ["//a//b", "//a//b"],
    ["/file.txt", "/file.txt"],
    ["/a/..b/c", "/a/..b/c"],
  ])("%s → %s", (input, output) => {
    expect(removeDotSegments(input)).toBe(output);
  });
});
