// The admin API: a Hono app served only on the unix socket. Every body is
// validated with the same valibot schemas the CLI uses; then the registry does
// the work. Commands that wait (deploy, add, rm, remove, pause, stop,
// rollout deploy, upgrade) answer with NDJSON: progress lines, then one result line, so
// the CLI can show what happens while it waits. Every command gets the
// progress callback, because any of them may have to warn that the state
// could not be saved.
import { Hono, type Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { stream } from "hono/streaming";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { validator } from "hono/validator";
import * as v from "valibot";
import { log } from "../log.ts";
import { CommandError, type Progress } from "../service/command-error.ts";
import type { Registry } from "../service/registry.ts";
import { describeIssues } from "../values.ts";
import { DeployRequest, PauseRequest, RolloutSetRequest, ServiceRequest, StopRequest, TargetsRequest, UpgradeRequest } from "./requests.ts";

export type ProgressEvent = { progress: string } | { ok: true } | { error: string };

const JSON_TYPE = /^application\/([\w.-]+\+)?json\s*(;|$)/i;

/**
 * Validates a command's JSON body with its schema (hono's validator reads
 * the body; a malformed one reaches onError below). A body that is not
 * declared as JSON would reach the schema as `{}`, so it is refused as such.
 */
const jsonBody = <S extends v.GenericSchema>(schema: S) =>
  validator("json", (value, c) => {
    if (!JSON_TYPE.test(c.req.header("content-type") ?? "")) {
      return c.json({ error: "expected a JSON body (Content-Type: application/json)" }, 415);
    }
    const result = v.safeParse(schema, value);
    if (!result.success) return c.json({ error: describeIssues(result.issues) }, 400);
    return result.output as v.InferOutput<S>;
  });

interface Outcome {
  event: ProgressEvent;
  status?: ContentfulStatusCode;
}

/** The events of a running command, in order: its progress lines, then its result. */
function outcomes(work: (progress: Progress) => Promise<void>): AsyncGenerator<Outcome> {
  const queue: Outcome[] = [];
  let done = false;
  let wake: (() => void) | undefined;
  const push = (outcome: Outcome) => {
    queue.push(outcome);
    wake?.();
  };
  work((line) => push({ event: { progress: line } }))
    .then(
      () => push({ event: { ok: true } }),
      (error) => push({ event: { error: errorMessage(error) }, status: error instanceof CommandError ? (error.status as ContentfulStatusCode) : 500 }),
    )
    .finally(() => {
      done = true;
      wake?.();
    });
  return (async function* () {
    for (;;) {
      const next = queue.shift();
      if (next) yield next;
      else if (done) return;
      else await new Promise<void>((resolve) => (wake = resolve));
    }
  })();
}

/**
 * Runs a long command. The answer waits for its first event: a command that
 * fails before reporting any progress (bad input, a conflict, an unknown
 * service) is answered with its status and a JSON error; otherwise progress
 * lines and then the result stream as NDJSON. A client that goes away does
 * not stop the command: it completes, and hono's stream drops what is
 * written after the client left.
 */
async function streamed(c: Context, work: (progress: Progress) => Promise<void>): Promise<Response> {
  const events = outcomes(work);
  const first = (await events.next()).value as Outcome;
  if ("error" in first.event) return c.json(first.event, first.status ?? 500);
  c.header("content-type", "application/x-ndjson");
  return stream(c, async (out) => {
    await out.writeln(JSON.stringify(first.event));
    for await (const { event } of events) await out.writeln(JSON.stringify(event));
  });
}

function errorMessage(error: unknown): string {
  if (error instanceof CommandError) return error.message;
  log.error("Admin command failed", { error: (error as Error)?.message ?? String(error) });
  return "internal error (see the server log)";
}

/** What the server itself does on command (as opposed to the services in the registry). */
export interface ServerControl {
  upgrade(request: UpgradeRequest, progress: Progress): Promise<void>;
}

export function createAdminApp(registry: Registry, server: ServerControl) {
  const app = new Hono();

  app.get("/health", (c) => c.json({ ok: true }));
  app.get("/services", (c) => c.json({ services: registry.list() }));

  // One route per command; each validates its body, then lets the registry work.
  const command = <S extends v.GenericSchema>(path: string, schema: S, work: (request: v.InferOutput<S>, progress: Progress) => Promise<void>) =>
    app.post(path, jsonBody(schema), (c) => {
      const request = c.req.valid("json") as v.InferOutput<S>;
      return streamed(c, (progress) => work(request, progress));
    });
  command("/deploy", DeployRequest, (r, p) => registry.deploy(r, p));

  command("/remove", ServiceRequest, (r, p) => registry.remove(r, p));
  command("/add", TargetsRequest, (r, p) => registry.add(r, p));
  command("/rm", TargetsRequest, (r, p) => registry.rm(r, p));
  command("/pause", PauseRequest, (r, p) => registry.pause(r, p));
  command("/stop", StopRequest, (r, p) => registry.stop(r, p));
  command("/resume", ServiceRequest, (r, p) => registry.resume(r, p));
  command("/rollout/deploy", TargetsRequest, (r, p) => registry.rolloutDeploy(r, p));
  command("/rollout/set", RolloutSetRequest, (r, p) => registry.rolloutSet(r, p));
  command("/rollout/stop", ServiceRequest, (r, p) => registry.rolloutStop(r, p));
  command("/upgrade", UpgradeRequest, (r, p) => server.upgrade(r, p));

  app.notFound((c) => c.json({ error: `unknown admin endpoint ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    // The validator's only exception: a body that does not parse as JSON.
    if (error instanceof HTTPException && error.status === 400) return c.json({ error: "request body is not valid JSON" }, 400);
    return c.json({ error: errorMessage(error) }, 500);
  });
  return app;
}
