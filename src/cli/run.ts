import { ConfigError, resolveRunOptions, type RunFlags } from "../config.ts";
import { runServer, StartupError } from "../server/server.ts";
import { CliError } from "./client.ts";
import { parachuteCommand } from "./command.ts";

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
      workers: { type: "string", description: "worker processes sharing the ports; 1 = a single process [env WORKERS] (default: one per core)", valueHint: "N" },
    },
  },
  async run(ctx) {
    try {
      await runServer(resolveRunOptions(ctx.flags as RunFlags));
    } catch (error) {
      if (error instanceof ConfigError || error instanceof StartupError) throw new CliError(error.message);
      throw error;
    }
  },
});
