// The setup most end-to-end files share: one proxy process for the file, and
// backends that are all stopped when the file is done.
import { afterAll, beforeAll } from "bun:test";
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
