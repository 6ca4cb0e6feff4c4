import { expect, test } from "bun:test";
import { availableCores } from "./config.ts";

const files = (contents: Record<string, string>) => (file: string) => contents[file];

test("the default worker count is the CPUs this process may use", () => {
  expect(availableCores(8, files({}))).toBe(8);
  expect(availableCores(8, files({ "/sys/fs/cgroup/cpu.max": "max 100000\n" }))).toBe(8);
  expect(availableCores(8, files({ "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n" }))).toBe(8);
});

test("a cgroup CPU quota (a container's --cpus) lowers it, rounded up, never below 1", () => {
  expect(availableCores(64, files({ "/sys/fs/cgroup/cpu.max": "200000 100000\n" }))).toBe(2);
  expect(availableCores(64, files({ "/sys/fs/cgroup/cpu.max": "150000 100000\n" }))).toBe(2);
  expect(availableCores(64, files({ "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000\n", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n" }))).toBe(1);
  // A quota above the CPUs it may run on does not raise it.
  expect(availableCores(2, files({ "/sys/fs/cgroup/cpu.max": "800000 100000\n" }))).toBe(2);
});
