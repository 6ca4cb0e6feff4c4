// `rollout deploy|set|stop` (README "Traffic control").
import { defineCommand } from "citty";
import { RolloutSetRequest, ServiceRequest, TargetsRequest } from "../admin/requests.ts";
import { serviceCommand } from "./command.ts";

export const rolloutCommand = defineCommand({
  meta: { name: "rollout", description: "Send a share of clients to a second set of targets" },
  subCommands: {
    deploy: serviceCommand({
      name: "rollout deploy",
      description: "Health-check rollout targets and add them beside the active ones",
      flags: {
        target: { type: "list", field: "targets", description: "rollout target HOST:PORT", valueHint: "HOST:PORT", required: true },
        "deploy-timeout": { type: "string", description: "max wait for the targets to become healthy", default: "30s", valueHint: "DURATION" },
        "drain-timeout": { type: "string", description: "max time replaced rollout targets get to drain", default: "30s", valueHint: "DURATION" },
      },
      schema: TargetsRequest,
      path: "/rollout/deploy",
      done: (r) => `Rollout targets of ${r.service}: ${r.targets.join(", ")} (send clients there with "parachute rollout set")`,
    }),
    set: serviceCommand({
      name: "rollout set",
      description: "Choose which clients (by parachute-rollout cookie) get the rollout targets",
      flags: {
        percent: { type: "string", description: "share of cookie values sent to the rollout targets (0-100)", default: "0", valueHint: "N" },
        list: { type: "list", description: "cookie values always sent to the rollout targets", valueHint: "VALUE" },
      },
      schema: RolloutSetRequest,
      path: "/rollout/set",
      done: (r) => `Rollout of ${r.service}: ${r.percent}% of clients${r.list.length ? ` plus ${r.list.join(", ")}` : ""}`,
    }),
    stop: serviceCommand({
      name: "rollout stop",
      description: "Send every client back to the active targets",
      flags: {},
      schema: ServiceRequest,
      path: "/rollout/stop",
      done: (r) => `Rollout of ${r.service} stopped`,
    }),
  },
});
