// Help text for every command, drawn from the same flag tables that parse the
// command line, and wrapped to 80 columns (README "Commands").
import type { CommandShape, FlagSpec } from "./flags.ts";

const WIDTH = 80;
const INDENT = 2;
/** Where descriptions start at most; a longer term puts its description on the next line. */
const MAX_COLUMN = 30;

/** Breaks `text` into lines of at most `width` characters, at spaces. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** A two-column list: each term, then its description wrapped beside it. */
function entries(items: [term: string, description: string][]): string[] {
  const column = Math.min(MAX_COLUMN, INDENT + Math.max(0, ...items.map(([term]) => term.length)) + 2);
  const pad = " ".repeat(column);
  return items.flatMap(([term, description]) => {
    const left = " ".repeat(INDENT) + term;
    const body = wrap(description, WIDTH - column);
    if (left.length + 2 > column) return [left, ...body.map((l) => pad + l)];
    return body.length ? [left.padEnd(column) + body[0], ...body.slice(1).map((l) => pad + l)] : [left];
  });
}

function flagTerm(name: string, spec: FlagSpec): string {
  if (spec.type === "boolean") return spec.default === "true" ? `--[no-]${name}` : `--${name}`;
  return `--${name} ${spec.valueHint ?? "VALUE"}`;
}

function flagDescription(spec: FlagSpec): string {
  const notes = [
    spec.required ? "required" : "",
    spec.type === "list" ? "repeatable, comma-separated" : "",
    spec.default !== undefined ? `default: ${spec.default}` : "",
  ].filter(Boolean);
  return notes.length ? `${spec.description} (${notes.join("; ")})` : spec.description;
}

export function commandHelp(name: string, description: string, shape: CommandShape): string {
  const positionals = shape.positionals.map((p) => ` ${p.name}`).join("");
  const lines = [...wrap(description, WIDTH), "", `USAGE ${name} [OPTIONS]${positionals}`];
  if (shape.positionals.length) {
    lines.push("", "ARGUMENTS");
    lines.push(...entries(shape.positionals.map((p) => [p.name, p.description])));
  }
  if (Object.keys(shape.flags).length) {
    lines.push("", "OPTIONS");
    lines.push(...entries(Object.entries(shape.flags).map(([flag, spec]) => [flagTerm(flag, spec), flagDescription(spec)])));
  }
  return lines.join("\n");
}

export function groupHelp(name: string, description: string, commands: [name: string, description: string][]): string {
  const lines = [...wrap(description, WIDTH), "", `USAGE ${name} <command>`, "", "COMMANDS"];
  lines.push(...entries(commands));
  lines.push("", ...wrap(`Use ${name} <command> --help for more about a command.`, WIDTH));
  return lines.join("\n");
}

/** Text as Markdown shows it literally: no table breaks, no emphasis, no HTML tags. */
const markdownText = (text: string) => text.replace(/[|*_]/g, (c) => `\\${c}`).replaceAll("<", "&lt;");

/** The README's table of a command's flags (checked against the code by help.test.ts). */
export function markdownFlagTable(shape: CommandShape): string {
  const rows = Object.entries(shape.flags).map(([flag, spec]) => {
    const term = spec.type === "boolean" ? `--${flag}` : `--${flag} ${spec.valueHint ?? "VALUE"}`;
    const meaning = spec.type === "list" ? `${spec.description} (repeatable)` : spec.description;
    return `| \`${term}\` | ${spec.required ? "required" : (spec.default ?? "none")} | ${markdownText(meaning)} |`;
  });
  return ["| flag | default | meaning |", "|---|---|---|", ...rows].join("\n");
}
