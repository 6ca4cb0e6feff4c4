import { expect, test } from "bun:test";
import * as v from "valibot";
import { addressBytes, cidrContains, cidrSchema, parseCidr } from "./cidr.ts";

const contains = (range: string, address: string) => cidrContains(parseCidr(range), address);

test("IPv4 ranges: prefix boundaries, a single address, 0/0", () => {
  expect(contains("10.0.0.0/8", "10.255.1.2")).toBe(true);
  expect(contains("10.0.0.0/8", "11.0.0.1")).toBe(false);
  expect(contains("192.168.4.0/22", "192.168.7.255")).toBe(true);
  expect(contains("192.168.4.0/22", "192.168.8.0")).toBe(false);
  expect(contains("203.0.113.7", "203.0.113.7")).toBe(true);
  expect(contains("203.0.113.7", "203.0.113.8")).toBe(false);
  expect(contains("0.0.0.0/0", "8.8.8.8")).toBe(true);
});

test("an IPv4 range matches IPv4-mapped IPv6 peers (a dual-stack listener's view of IPv4), not other IPv6", () => {
  expect(contains("127.0.0.0/8", "::ffff:127.0.0.1")).toBe(true);
  expect(contains("0.0.0.0/0", "::1")).toBe(false);
  expect(contains("::/0", "127.0.0.1")).toBe(false);
});

test("IPv6 ranges, with :: anywhere, an IPv4 tail and a zone", () => {
  expect(contains("2001:db8::/32", "2001:db8:ffff::1")).toBe(true);
  expect(contains("2001:db8::/32", "2001:db9::1")).toBe(false);
  expect(contains("fd00::/7", "fdff::1")).toBe(true);
  expect(contains("fd00::/7", "fc00::1")).toBe(true);
  expect(contains("fd00::/7", "fe00::1")).toBe(false);
  expect(contains("::1", "::1")).toBe(true);
  expect(contains("::1/128", "::2")).toBe(false);
  expect(contains("fe80::/10", "fe80::1%eth0")).toBe(true);
  expect(addressBytes("64:ff9b::192.0.2.33")).toEqual(new Uint8Array([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2, 33]));
  expect(addressBytes("1:2:3:4:5:6:7:8")).toEqual(new Uint8Array([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]));
});

test("host bits are ignored, as nginx's set_real_ip_from does", () => {
  expect(contains("10.1.2.3/8", "10.9.9.9")).toBe(true);
  expect(contains("2001:db8::1/32", "2001:db8::2")).toBe(true);
});

test("a bad CIDR is an error naming it", () => {
  const error = (input: string) => {
    const result = v.safeParse(cidrSchema, input);
    return result.success ? undefined : result.issues[0].message;
  };
  expect(error("10.0.0.0/33")).toBe('invalid CIDR "10.0.0.0/33" (prefix must be 0-32)');
  expect(error("2001:db8::/129")).toBe('invalid CIDR "2001:db8::/129" (prefix must be 0-128)');
  expect(error("10.0.0.0/")).toBe('invalid CIDR "10.0.0.0/" (prefix must be 0-32)');
  expect(error("10.0.0.0/x")).toBe('invalid CIDR "10.0.0.0/x" (prefix must be 0-32)');
  expect(error("lb.internal/24")).toBe('invalid CIDR "lb.internal/24" (expected an IPv4 or IPv6 address, optionally /prefix)');
  expect(error("10.0.0/8")).toBe('invalid CIDR "10.0.0/8" (expected an IPv4 or IPv6 address, optionally /prefix)');
  expect(error("::ffff:10.0.0.0/104")).toBe('invalid CIDR "::ffff:10.0.0.0/104" (expected an IPv4 or IPv6 address, optionally /prefix)');
  expect(v.parse(cidrSchema, " 10.0.0.0/8 ")).toBe("10.0.0.0/8");
});
