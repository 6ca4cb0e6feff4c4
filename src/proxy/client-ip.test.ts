import { expect, test } from "bun:test";
import { Fields } from "../http/fields.ts";
import { clientIpFromHeader } from "./client-ip.ts";

function fields(...pairs: [string, string][]): Fields {
  const f = new Fields();
  for (const [name, value] of pairs) f.append(name, value);
  return f;
}

test("the named header's value when it is one IPv4 or IPv6 address, trimmed", () => {
  expect(clientIpFromHeader(fields(["CF-Connecting-IP", "203.0.113.9"]), "cf-connecting-ip")).toBe("203.0.113.9");
  expect(clientIpFromHeader(fields(["True-Client-IP", " 2001:db8::7 "]), "true-client-ip")).toBe("2001:db8::7");
});

test("a missing header, or a value that is not one IP address, gives nothing", () => {
  expect(clientIpFromHeader(fields(["X-Forwarded-For", "203.0.113.9"]), "true-client-ip")).toBeUndefined();
  for (const value of ["", "unknown", "203.0.113.9, 10.0.0.1", "203.0.113.9:443", "[2001:db8::7]", "999.1.1.1", "<script>"]) {
    expect(clientIpFromHeader(fields(["True-Client-IP", value]), "true-client-ip")).toBeUndefined();
  }
});

test("of several lines of the header, the first counts", () => {
  expect(clientIpFromHeader(fields(["True-Client-IP", "198.51.100.1"], ["True-Client-IP", "198.51.100.2"]), "true-client-ip")).toBe("198.51.100.1");
});
