// `add` and `rm`: change a service's targets without a redeploy (README "Traffic control").
import { TargetsRequest } from "../admin/requests.ts";
import { serviceCommand } from "./command.ts";
import type { FlagTable } from "./flags.ts";

const targetFlag: FlagTable = {
  target: { type: "list", field: "targets", description: "target HOST:PORT", valueHint: "HOST:PORT", required: true },
};

export const addCommand = serviceCommand({
  name: "add",
  description: "Add targets to a service once they pass health checks",
  flags: {
    ...targetFlag,
    "deploy-timeout": { type: "string", description: "max wait for the new targets to become healthy", default: "30s", valueHint: "DURATION" },
  },
  schema: TargetsRequest,
  path: "/add",
  done: (r) => `Added ${r.targets.join(", ")} to ${r.service}`,
});

export const rmCommand = serviceCommand({
  name: "rm",
  description: "Remove targets from a service; they drain like old targets in a deploy",
  flags: {
    ...targetFlag,
    "drain-timeout": { type: "string", description: "max time the targets get to finish in-flight requests (default: the service's)", valueHint: "DURATION" },
  },
  schema: TargetsRequest,
  path: "/rm",
  done: (r) => `Removed ${r.targets.join(", ")} from ${r.service}`,
  // kamal-proxy's `rm` removes a whole service; parachute's takes targets out (README "Coming from kamal-proxy").
  usageHint: (service) => `To remove the whole service ${service} and free its hosts, use: parachute remove ${service}`,
});
