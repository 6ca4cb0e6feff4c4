// What every admin command shares: how it reports progress while it waits,
// and how it fails because of what the user asked.

/** An error the user caused; its message is shown as `Error: <message>`. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** A line of progress for the waiting client (README "Commands"). */
export type Progress = (line: string) => void;
