// Files in the state directory that must never be seen half-written (README
// "State"): written to a temp file in the same directory, fsynced, renamed
// over the old one, and the directory fsynced; a file that cannot be read
// back is moved aside, never deleted, so the operator can look at it.
import * as fs from "node:fs";
import * as path from "node:path";

/** The temp file a save writes first: per process, so two servers (during an upgrade) never share one. */
function temporary(file: string): string {
  return `${file}.tmp-${process.pid}`;
}

export function writeAtomically(file: string, text: string): void {
  const tmp = temporary(file);
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (error) {
    // A save that failed (a full disk, the file's place taken by a directory) leaves nothing behind.
    fs.rmSync(tmp, { force: true });
    throw error;
  }
  // fsync the directory so the rename itself survives a power cut.
  const dirFd = fs.openSync(path.dirname(file), "r");
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** Moves a file that cannot be used to `<file>.corrupt-<time>`; returns where it went (undefined if it could not be moved). */
export function setAside(file: string): string | undefined {
  const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
  try {
    fs.renameSync(file, aside);
    return aside;
  } catch {
    return undefined;
  }
}

/**
 * A server killed while saving leaves its `<file>.tmp-<pid>` behind; those
 * of processes that are gone are removed. A live one belongs to a server
 * saving right now (the old one, during an upgrade).
 */
export function removeStaleTemporaries(file: string): void {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.tmp-`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processExists(pid)) continue;
    fs.rmSync(path.join(dir, name), { force: true });
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
