import { ServiceRequest } from "../admin/requests.ts";
import { parachuteCommand, socketFlag } from "./command.ts";

export const removeCommand = parachuteCommand({
  name: "remove",
  description: "Stop routing to a service; its targets drain and its hosts become free",
  shape: {
    positionals: [{ name: "SERVICE", description: "service name" }],
    flags: {
      "drain-timeout": { type: "string", description: "max time targets get to finish in-flight requests (default: the service's)", valueHint: "DURATION" },
      ...socketFlag,
    },
  },
  async run(ctx) {
    const request = ctx.request(ServiceRequest, { service: ctx.positionals[0] });
    await ctx.client().command("/remove", { ...ctx.values, service: request.service });
    console.error(`Removed ${request.service}`);
  },
});
