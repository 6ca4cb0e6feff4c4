import { expect, test } from "bun:test";
import { ValueError } from "../values.ts";
import { HANDOVER_ENV, HTTP_FD, HTTPS_FD, inheritedHandover, privateSocketPath } from "./upgrade.ts";

const env = (value: unknown) => ({ [HANDOVER_ENV]: typeof value === "string" ? value : JSON.stringify(value) });

test("no handover in the environment: not a successor", () => {
  expect(HANDOVER_ENV).toBe("PARACHUTE_HANDOVER");
  expect(inheritedHandover({})).toBeUndefined();
  expect(inheritedHandover({ [HANDOVER_ENV]: "" })).toBeUndefined();
});

test("a handover is read with its ports and inherited sockets", () => {
  const handover = { from: 1234, httpPort: 80, httpsPort: 443, metricsPort: 0, statusPort: 8081, httpFd: HTTP_FD, httpsFd: HTTPS_FD };
  expect(inheritedHandover(env(handover))).toEqual(handover);
  expect(inheritedHandover(env({ from: 1, httpPort: "8080", httpsPort: 0, metricsPort: 9090 }))).toEqual({ from: 1, httpPort: 8080, httpsPort: 0, metricsPort: 9090, statusPort: 0 });
  expect([HTTP_FD, HTTPS_FD]).toEqual([3, 4]);
});

test("a broken handover is an error naming the variable", () => {
  const bad = (value: unknown) => {
    try {
      inheritedHandover(env(value));
    } catch (error) {
      expect(error).toBeInstanceOf(ValueError);
      return (error as Error).message;
    }
    throw new Error("expected a ValueError");
  };
  expect(bad("{not json")).toBe("PARACHUTE_HANDOVER is not valid JSON");
  expect(bad({ from: 1, httpPort: 70000, httpsPort: 443, metricsPort: 0 })).toBe('PARACHUTE_HANDOVER is invalid: invalid port "70000"');
  expect(bad({ from: 1, httpPort: 80, httpsPort: 443, metricsPort: 0, httpFd: 2 })).toStartWith("PARACHUTE_HANDOVER is invalid: ");
  expect(bad({ from: 1.5, httpPort: 80, httpsPort: 443, metricsPort: 0 })).toStartWith("PARACHUTE_HANDOVER is invalid: ");
});

test("the private admin socket path is the shared one plus the process id", () => {
  expect(privateSocketPath("/run/parachute.sock", 42)).toBe("/run/parachute.sock.42");
  expect(privateSocketPath("/run/parachute.sock")).toBe(`/run/parachute.sock.${process.pid}`);
});
