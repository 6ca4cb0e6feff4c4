import { ServiceRequest } from "../admin/requests.ts";
import { serviceCommand } from "./command.ts";

export const removeCommand = serviceCommand({
  name: "remove",
  description: "Stop routing to a service; its targets drain and its hosts become free",
  flags: {
    "drain-timeout": { type: "string", description: "max time targets get to finish in-flight requests (default: the service's)", valueHint: "DURATION" },
  },
  schema: ServiceRequest,
  path: "/remove",
  done: (r) => `Removed ${r.service}`,
});
