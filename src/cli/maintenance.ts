// `pause`, `stop`, `resume` (README "Traffic control").
import { PauseRequest, ServiceRequest, StopRequest } from "../admin/requests.ts";
import { serviceCommand } from "./command.ts";

const drainFlag = {
  "drain-timeout": { type: "string", description: "max time in-flight requests get to finish", default: "30s", valueHint: "DURATION" },
} as const;

export const pauseCommand = serviceCommand({
  name: "pause",
  description: "Pause a service: in-flight requests drain, new requests wait until resume",
  flags: {
    ...drainFlag,
    "max-pause": { type: "string", description: "how long a request may wait before it gets 504", default: "30s", valueHint: "DURATION" },
  },
  schema: PauseRequest,
  path: "/pause",
  done: (r) => `Paused ${r.service}`,
});

export const stopCommand = serviceCommand({
  name: "stop",
  description: "Stop a service: new requests get 503 with a message",
  flags: {
    ...drainFlag,
    message: { type: "string", description: "message shown on the 503 page", valueHint: "TEXT" },
  },
  schema: StopRequest,
  path: "/stop",
  done: (r) => `Stopped ${r.service}`,
});

export const resumeCommand = serviceCommand({
  name: "resume",
  description: "Resume a paused or stopped service",
  flags: {},
  schema: ServiceRequest,
  path: "/resume",
  done: (r) => `Resumed ${r.service}`,
});
