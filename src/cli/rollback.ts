// `rollback`: back to the targets of the previous deploy (README "History and rollback").
import { ROLLBACK_PARAMETERS, RollbackRequest } from "../admin/requests.ts";
import { serviceCommand } from "./command.ts";
import { flagTable } from "./flags.ts";
import { markdownFlagTable } from "./help.ts";

const rollbackFlags = flagTable(ROLLBACK_PARAMETERS);

/** The README's table of rollback flags. */
export function rollbackTableMarkdown(): string {
  return markdownFlagTable({ positionals: [], flags: rollbackFlags });
}

export const rollbackCommand = serviceCommand({
  name: "rollback",
  description: "Switch a service back to the targets of its previous deploy: health-checked first, then the current targets drain",
  flags: rollbackFlags,
  schema: RollbackRequest,
  path: "/rollback",
  done: (r) => `Rolled back ${r.service}`,
});
