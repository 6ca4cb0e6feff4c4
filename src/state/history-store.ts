// The deploy history on disk (README "History and rollback"):
// <state-dir>/history.json, apart from the routing state so that a history
// problem can never cost the routes. Written atomically after every recorded
// command; a file that cannot be read is set aside like a corrupt state file
// and parachute starts with an empty history.
import * as fs from "node:fs";
import * as path from "node:path";
import * as v from "valibot";
import { History, SavedHistorySchema } from "../service/history.ts";
import { removeStaleTemporaries, setAside, writeAtomically } from "./atomic-file.ts";

export class HistoryStore {
  readonly file: string;

  constructor(dir: string) {
    this.file = path.join(dir, "history.json");
  }

  /** The saved history: empty when there is none; a corrupt file is moved aside as history.json.corrupt-<time> and reported. */
  load(): { history: History; problem?: string; setAside?: string } {
    removeStaleTemporaries(this.file);
    let text: string;
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { history: new History() };
      return this.corrupt(`cannot read history file: ${(error as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      return this.corrupt(`history file is not valid JSON: ${(error as Error).message}`);
    }
    const result = v.safeParse(SavedHistorySchema, json);
    if (!result.success) {
      const issue = result.issues[0]!;
      const where = v.getDotPath(issue) ?? "";
      return this.corrupt(`history file does not match the schema${where ? ` at ${where}` : ""}: ${issue.message}`);
    }
    return { history: new History(result.output) };
  }

  private corrupt(problem: string): { history: History; problem: string; setAside?: string } {
    const aside = setAside(this.file);
    return { history: new History(), problem, ...(aside ? { setAside: aside } : {}) };
  }

  save(history: History): void {
    writeAtomically(this.file, JSON.stringify(history) + "\n");
  }
}
