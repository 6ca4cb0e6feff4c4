import * as path from "node:path";
import { DEPLOY_PARAMETERS, DeployRequest } from "../admin/requests.ts";
import { SERVICE_OPTIONS } from "../service/options.ts";
import { parachuteCommand, socketFlag } from "./command.ts";
import { flagTable, type CommandShape, type FlagTable } from "./flags.ts";
import { markdownFlagTable } from "./help.ts";

export const deployFlags: FlagTable = { ...flagTable(DEPLOY_PARAMETERS), ...flagTable(SERVICE_OPTIONS), ...socketFlag };

/** The README's table of deploy flags (`--socket` is common to every command and described there). */
export function deployTableMarkdown(): string {
  return markdownFlagTable({ positionals: [], flags: { ...flagTable(DEPLOY_PARAMETERS), ...flagTable(SERVICE_OPTIONS) } });
}

export const deployShape: CommandShape = {
  positionals: [{ name: "SERVICE", description: "service name" }],
  flags: deployFlags,
  // kamal-proxy takes the certificate directory per deploy; parachute has one for the server.
  movedFlags: { "tls-acme-cache-path": "parachute sets the certificate directory for the whole server: parachute run --tls-acme-cache-path DIR" },
};

export const deployCommand = parachuteCommand({
  name: "deploy",
  description: "Deploy a service: health-check the new targets, switch traffic to them, drain the old ones",
  shape: deployShape,
  async run(ctx) {
    const request = ctx.request(DeployRequest, { service: ctx.positionals[0] });
    // The server reads these files from its own working directory: a path the
    // user typed relative to theirs is made absolute here.
    const files = Object.fromEntries(
      (["tlsCertificatePath", "tlsPrivateKeyPath", "errorPages", "basicAuthFile", "tlsDnsHook"] as const)
        .filter((field) => typeof ctx.values[field] === "string" && ctx.values[field] !== "")
        .map((field) => [field, path.resolve(ctx.values[field] as string)]),
    );
    await ctx.client().command("/deploy", { ...ctx.values, ...files, service: request.service });
    console.log(`Deployed ${request.service} to ${request.targets.join(", ")}`);
  },
});
