// Prints the README's table of `deploy` flags from the flag declarations
// (src/service/options.ts and src/admin/requests.ts). src/cli/help.test.ts
// fails when the README's copy differs: run `bun run flag-table` and paste.
import { deployTableMarkdown } from "../src/cli/deploy.ts";

console.log(deployTableMarkdown());
