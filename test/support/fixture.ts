// The setup most end-to-end files share: one proxy process for the file, and
// backends that are all stopped when the file is done; or, for files whose
// tests each need their own, processes stopped after each test.
import { afterAll, afterEach, beforeAll } from "bun:test";
import { startBackend, type Backend } from "./backend.ts";
import { HOOK_TIMEOUT, Proxy, type ProxyOptions } from "./proxy.ts";

export interface ProxyFixture {
  /** The file's proxy (started in beforeAll). */
  readonly proxy: Proxy;
  /** Starts a backend that is stopped after the file's tests. */
  backend(name: string, options?: { port?: number }): Backend;
}

export function useProxy(options: ProxyOptions = {}): ProxyFixture {
  let proxy: Proxy | undefined;
  const backends: Backend[] = [];
  beforeAll(async () => {
    proxy = await Proxy.start(options);
  }, HOOK_TIMEOUT);
  afterAll(async () => {
    await proxy?.stop();
    await Promise.all(backends.map((b) => b.stop().catch(() => {})));
  }, HOOK_TIMEOUT);
  return {
    get proxy() {
      if (!proxy) throw new Error("the proxy is started in beforeAll");
      return proxy;
    },
    backend(name, backendOptions = {}) {
      const b = startBackend(name, backendOptions);
      backends.push(b);
      return b;
    },
  };
}

/** Starts backends that are all stopped when the file is done (for files that start their own proxies). */
export function useBackends(): (name: string) => Backend {
  const backends: Backend[] = [];
  afterAll(async () => {
    await Promise.all(backends.map((b) => b.stop()));
  }, HOOK_TIMEOUT);
  return (name) => {
    const b = startBackend(name);
    backends.push(b);
    return b;
  };
}

export interface PerTestProcesses {
  /** Starts a proxy (with `defaults` under `options`) that is stopped after the test. */
  startProxy(options?: ProxyOptions): Promise<Proxy>;
  /** Starts a backend that is stopped after the test. */
  backend(name: string): Backend;
  /** Anything else to undo after the test; undone last first, with the rest. */
  onCleanup(cleanup: () => unknown): void;
}

export function usePerTestProcesses(defaults: ProxyOptions = {}): PerTestProcesses {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  }, HOOK_TIMEOUT);
  return {
    async startProxy(options = {}) {
      const proxy = await Proxy.start({ ...defaults, ...options });
      cleanups.push(() => proxy.stop());
      return proxy;
    },
    backend(name) {
      const b = startBackend(name);
      cleanups.push(() => b.stop());
      return b;
    },
    onCleanup(cleanup) {
      cleanups.push(cleanup);
    },
  };
}
