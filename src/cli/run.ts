import { ConfigError, resolveRunOptions, type RunFlags } from "../config.ts";
import { runServer, StartupError } from "../server/server.ts";
import { CliError } from "./client.ts";
import { parachuteCommand } from "./command.ts";

/**
 * Bun's fetch allows only 256 requests in flight per process unless
 * BUN_CONFIG_MAX_HTTP_REQUESTS is in the environment at start; setting it
 * from code has no effect (BUN-NOTES §1.10). Past the cap, 256 long polls or
 * SSE streams would stall every other proxied request, so the server re-execs
 * itself once with the cap raised. execve keeps the pid, so signals, kill -9
 * and supervisors see one process.
 */
function ensureFetchCapacity() {
  if (process.env.BUN_CONFIG_MAX_HTTP_REQUESTS || typeof process.execve !== "function") return;
  // In a compiled binary argv[1] is the embedded entry point, not an argument.
  const compiled = process.argv[1]?.startsWith("/$bunfs/");
  const argv = compiled ? [process.execPath, ...process.argv.slice(2)] : process.argv;
  process.execve(process.execPath, argv, { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: String(FETCH_CAPACITY) });
}

const FETCH_CAPACITY = 65_535;

export const runCommand = parachuteCommand({
  name: "run",
  description: "Run the proxy server",
  shape: {
    positionals: [],
    flags: {
      "http-port": { type: "string", description: "port for HTTP traffic [env HTTP_PORT]", default: "80", valueHint: "PORT" },
      "https-port": { type: "string", description: "port for HTTPS traffic, 0 disables HTTPS [env HTTPS_PORT]", default: "443", valueHint: "PORT" },
      bind: { type: "string", description: "address to listen on (IPv4 or IPv6) [env BIND] (default: all interfaces)", valueHint: "ADDR" },
      "metrics-port": { type: "string", description: "Prometheus metrics port, 0 = off [env METRICS_PORT]", default: "0", valueHint: "PORT" },
      "state-dir": { type: "string", description: "state directory [env STATE_DIR] (default: ~/.config/parachute)", valueHint: "DIR" },
      debug: { type: "boolean", description: "debug logs [env DEBUG]" },
      socket: { type: "string", description: "admin socket path [env PARACHUTE_SOCKET]", valueHint: "PATH" },
    },
  },
  async run(ctx) {
    ensureFetchCapacity();
    try {
      await runServer(resolveRunOptions(ctx.flags as RunFlags));
    } catch (error) {
      if (error instanceof ConfigError || error instanceof StartupError) throw new CliError(error.message);
      throw error;
    }
  },
});
