// The admin API: a Hono app served only on the unix socket. Every body is
// validated with the same valibot schemas the CLI uses; then the registry does
// the work. Commands that wait (deploy, rollback, add, rm, remove, pause, stop,
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
import type { Given, Registry } from "../service/registry.ts";
import { describeIssues } from "../values.ts";
import { DeployRequest, PauseRequest, RollbackRequest, RolloutSetRequest, ServiceRequest, StopRequest, TargetsRequest, UpgradeRequest } from "./requests.ts";

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

  app.get("/history/:service", (c) => {
    const service = c.req.param("service");
    const records = registry.historyOf(service);
    if (!records && !registry.service(service)) return c.json({ error: `no service ${service} and no history of one` }, 404);
    return c.json({ service, records: records ?? [] });
  });

  // One route per command; each validates its body, then lets the registry
  // work. The fields the client gave (as it gave them, before defaults) go
  // with the request, for the history.
  const command = <S extends v.StrictObjectSchema<v.ObjectEntries, v.ErrorMessage<v.StrictObjectIssue> | undefined>>(
    path: string,
    schema: S,
    work: (request: v.InferOutput<S>, progress: Progress, given: Given) => Promise<void>,
  ) =>
    app.post(path, jsonBody(schema), async (c) => {
      const request = c.req.valid("json") as v.InferOutput<S>;
      const body = (await c.req.json()) as Record<string, unknown>;
      const given = Object.fromEntries(Object.entries(body).filter(([key]) => Object.hasOwn(schema.entries, key)));
      return streamed(c, (progress) => work(request, progress, given));
    });
  command("/deploy", DeployRequest, (r, p, g) => registry.deploy(r, p, g));
  command("/rollback", RollbackRequest, (r, p, g) => registry.rollback(r, p, g));

  command("/remove", ServiceRequest, (r, p, g) => registry.remove(r, p, g));
  command("/add", TargetsRequest, (r, p, g) => registry.add(r, p, g));
  command("/rm", TargetsRequest, (r, p, g) => registry.rm(r, p, g));
  command("/pause", PauseRequest, (r, p, g) => registry.pause(r, p, g));
  command("/stop", StopRequest, (r, p, g) => registry.stop(r, p, g));
  command("/resume", ServiceRequest, (r, p, g) => registry.resume(r, p, g));
  command("/rollout/deploy", TargetsRequest, (r, p, g) => registry.rolloutDeploy(r, p, g));
  command("/rollout/set", RolloutSetRequest, (r, p, g) => registry.rolloutSet(r, p, g));
  command("/rollout/stop", ServiceRequest, (r, p, g) => registry.rolloutStop(r, p, g));
  command("/upgrade", UpgradeRequest, (r, p) => server.upgrade(r, p));

  app.notFound((c) => c.json({ error: `unknown admin endpoint ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    // The validator's only exception: a body that does not parse as JSON.
    if (error instanceof HTTPException && error.status === 400) return c.json({ error: "request body is not valid JSON" }, 400);
    return c.json({ error: errorMessage(error) }, 500);
  });
  return app;
}
