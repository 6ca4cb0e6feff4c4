// `parachute upgrade`: the running server starts a new one from the same
// executable path and `run` arguments, hands it its sockets and state, and
// drains (README "Upgrading parachute").
import { UpgradeRequest } from "../admin/requests.ts";
import { parachuteCommand, socketFlag } from "./command.ts";

export const upgradeCommand = parachuteCommand({
  name: "upgrade",
  description: "Restart the server from its executable (replace the binary first) without dropping a connection",
  shape: {
    positionals: [],
    flags: {
      "ready-timeout": { type: "string", description: "how long the new server gets to start and serve", default: "30s", valueHint: "DURATION" },
      "drain-timeout": { type: "string", description: "max time the old server's in-flight requests get to finish", default: "30s", valueHint: "DURATION" },
      ...socketFlag,
    },
  },
  async run(ctx) {
    ctx.request(UpgradeRequest);
    await ctx.client().command("/upgrade", ctx.values);
    console.log("Upgraded parachute");
  },
});
