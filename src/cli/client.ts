// The admin-socket client every command but `run` uses.
import type { ProgressEvent } from "../admin/app.ts";

export class CliError extends Error {}

export class AdminClient {
  constructor(readonly socket: string) {}

  private unreachable(): CliError {
    return new CliError(`cannot reach parachute at ${this.socket}: is "parachute run" running?`);
  }

  private async send(method: string, path: string, body?: unknown): Promise<Response> {
    try {
      return await fetch(`http://parachute${path}`, {
        method,
        unix: this.socket,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        // Deploys can legitimately take minutes (deploy + drain timeouts).
        timeout: false,
      });
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === "EACCES" || code === "EPERM") {
        throw new CliError(`permission denied on ${this.socket}: the socket belongs to the user running "parachute run" (mode 0600)`);
      }
      throw this.unreachable();
    }
  }

  async get<T>(path: string): Promise<T> {
    const res = await this.send("GET", path);
    const json = (await res.json().catch(() => ({ error: `unexpected answer from the server (HTTP ${res.status})` }))) as T & { error?: string };
    if (!res.ok || json.error) throw new CliError(json.error ?? `HTTP ${res.status}`);
    return json;
  }

  /** Runs a command; progress lines go to `onProgress` as they arrive. */
  async command(path: string, body: unknown, onProgress: (line: string) => void = (line) => console.error(line)): Promise<void> {
    const res = await this.send("POST", path, body);
    if (!res.headers.get("content-type")?.includes("ndjson")) {
      const json = (await res.json().catch(() => ({}))) as { error?: string };
      if (!res.ok || json.error) throw new CliError(json.error ?? `unexpected answer from the server (HTTP ${res.status})`);
      return;
    }
    let buffered = "";
    let result: ProgressEvent | undefined;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body!) {
        buffered += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffered.indexOf("\n")) !== -1) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (!line.trim()) continue;
          const event = JSON.parse(line) as ProgressEvent;
          if ("progress" in event) onProgress(event.progress);
          else result = event;
        }
      }
    } catch {
      throw new CliError(`lost the connection to parachute at ${this.socket} before the command finished`);
    }
    if (!result) throw new CliError(`parachute at ${this.socket} ended the command without a result`);
    if ("error" in result) throw new CliError(result.error);
  }
}
