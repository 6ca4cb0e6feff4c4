// Rewrites the README's generated flag tables (run and deploy) from the option
// declarations; src/cli/readme-tables.test.ts fails when they differ.
import { regenerateTables } from "../src/cli/readme-tables.ts";

const file = new URL("../README.md", import.meta.url);
const before = await Bun.file(file).text();
const after = regenerateTables(before);
await Bun.write(file, after);
console.log(after === before ? "README.md tables are up to date" : "README.md tables regenerated");
