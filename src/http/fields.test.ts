import { expect, test } from "bun:test";
import { Fields } from "./fields.ts";

test("get/getAll by lower-case name; set replaces every line; delete removes every line", () => {
  const fields = new Fields();
  fields.append("X-A", "1");
  fields.append("Set-Cookie", "a=1");
  fields.append("x-a", "2");
  fields.append("Set-Cookie", "b=2");
  expect(fields.get("x-a")).toBe("1");
  expect(fields.getAll("set-cookie")).toEqual(["a=1", "b=2"]);
  fields.set("X-A", "3");
  expect(fields.getAll("x-a")).toEqual(["3"]);
  fields.delete("set-cookie");
  expect(fields.serialize()).toBe("X-A: 3\r\n");
});

test("tokens lists comma-separated values of every line, lower case", () => {
  const fields = new Fields();
  fields.append("Connection", "Keep-Alive, X-Secret");
  fields.append("connection", "upgrade");
  expect(fields.tokens("connection")).toEqual(["keep-alive", "x-secret", "upgrade"]);
});

test("to and from web Headers, Set-Cookie lines kept apart", () => {
  const headers = new Headers([["content-type", "text/plain"], ["set-cookie", "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT"], ["set-cookie", "b=2"]]);
  const fields = Fields.from(headers);
  expect(fields.getAll("set-cookie")).toEqual(["a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "b=2"]);
  expect(fields.toHeaders().getSetCookie()).toEqual(["a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "b=2"]);
});
