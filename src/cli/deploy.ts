import * as path from "node:path";
import { DeployRequest } from "../admin/requests.ts";
import { parachuteCommand, socketFlag } from "./command.ts";
import type { FlagTable } from "./flags.ts";

export const deployFlags: FlagTable = {
  target: { type: "list", field: "targets", description: "target HOST:PORT; several are load-balanced (required)", valueHint: "HOST:PORT" },
  host: { type: "list", field: "hosts", description: "host name(s) to serve; *.example.com allowed; none = catch-all", valueHint: "NAME" },
  "path-prefix": { type: "list", field: "pathPrefixes", description: "serve only below these path(s)", default: "/", valueHint: "PATH" },
  "strip-path-prefix": { type: "boolean", description: "strip the path prefix before forwarding", default: true },
  tls: { type: "boolean", description: "serve over HTTPS with an automatic certificate (needs --host)", default: false },
  "tls-staging": { type: "boolean", description: "use the ACME staging directory", default: false },
  "tls-certificate-path": { type: "string", description: "PEM certificate to use instead of ACME", valueHint: "FILE" },
  "tls-private-key-path": { type: "string", description: "PEM private key for --tls-certificate-path", valueHint: "FILE" },
  "tls-redirect": { type: "boolean", description: "with TLS, redirect HTTP to HTTPS (301)", default: true },
  "canonical-host": { type: "string", description: "301-redirect the service's other hosts to this one", valueHint: "NAME" },
  "deploy-timeout": { type: "string", description: "max wait for new targets to become healthy", default: "30s", valueHint: "DURATION" },
  "drain-timeout": { type: "string", description: "max time old targets get to finish in-flight requests", default: "30s", valueHint: "DURATION" },
  force: { type: "boolean", description: "skip waiting for health checks", default: false },
  "health-check-path": { type: "string", description: "health check path", default: "/up", valueHint: "PATH" },
  "health-check-interval": { type: "string", description: "time between health checks", default: "1s", valueHint: "DURATION" },
  "health-check-timeout": { type: "string", description: "timeout of one health check", default: "5s", valueHint: "DURATION" },
  "health-check-port": { type: "string", description: "health check port (default: the target's)", valueHint: "PORT" },
  "health-check-host": { type: "string", description: "Host header for health checks", valueHint: "NAME" },
  "target-timeout": { type: "string", description: "max wait for a target's response headers, then 504", default: "30s", valueHint: "DURATION" },
  "forward-headers": { type: "boolean", description: "trust and extend inbound X-Forwarded-* (default: true without TLS, false with TLS)" },
  "buffer-requests": { type: "boolean", description: "read request bodies fully before forwarding", default: false },
  "buffer-responses": { type: "boolean", description: "read response bodies fully before relaying", default: false },
  "buffer-memory": { type: "string", description: "in-memory part of a buffer; the rest spills to a temp file", default: "1m", valueHint: "SIZE" },
  "max-request-body": { type: "string", description: "largest request body when buffering (413 above), 0 = unlimited", default: "0", valueHint: "SIZE" },
  "max-response-body": { type: "string", description: "largest response body when buffering (502 above), 0 = unlimited", default: "0", valueHint: "SIZE" },
  "error-pages": { type: "string", description: "directory with custom <status>.html error pages", valueHint: "DIR" },
  "log-request-header": { type: "list", field: "logRequestHeaders", description: "request header(s) to add to the request log", valueHint: "NAME" },
  "log-response-header": { type: "list", field: "logResponseHeaders", description: "response header(s) to add to the request log", valueHint: "NAME" },
  "read-target": { type: "list", field: "readTargets", description: "target(s) for GET/HEAD requests", valueHint: "HOST:PORT" },
  "writer-affinity-timeout": { type: "string", description: "after a write, how long a client's reads go to the writers", default: "1s", valueHint: "DURATION" },
  ...socketFlag,
};

export const deployCommand = parachuteCommand({
  name: "deploy",
  description: "Deploy a service: health-check the new targets, switch traffic to them, drain the old ones",
  shape: { positionals: [{ name: "SERVICE", description: "service name" }], flags: deployFlags },
  async run(ctx) {
    const request = ctx.request(DeployRequest, { service: ctx.positionals[0] });
    // The server reads these files from its own working directory: a path the
    // user typed relative to theirs is made absolute here.
    const files = Object.fromEntries(
      (["tlsCertificatePath", "tlsPrivateKeyPath", "errorPages"] as const)
        .filter((field) => typeof ctx.values[field] === "string" && ctx.values[field] !== "")
        .map((field) => [field, path.resolve(ctx.values[field] as string)]),
    );
    await ctx.client().command("/deploy", { ...ctx.values, ...files, service: request.service });
    console.error(`Deployed ${request.service} to ${request.targets.join(", ")}`);
  },
});
