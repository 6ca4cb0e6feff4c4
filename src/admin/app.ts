// The admin API: a Hono app served only on the unix socket. Every body is
// validated with the same valibot schemas the CLI uses; then the registry does
// the work. Commands that wait (deploy, add, rm, remove, pause, stop,
// rollout deploy, upgrade) answer with NDJSON: progress lines, then one result line, so
// the CLI can show what happens while it waits. Every command gets the
// progress callback, because any of them may have to warn that the state
// could not be saved.
import { Hono, type Context } from "hono";
import * as v from "valibot";
import { log } from "../log.ts";
import { CommandError, type Progress, type Registry } from "../service/registry.ts";
import { describeIssues } from "../values.ts";
import { DeployRequest, PauseRequest, RolloutSetRequest, ServiceRequest, StopRequest, TargetsRequest, UpgradeRequest } from "./requests.ts";

export type ProgressEvent = { progress: string } | { ok: true } | { error: string };

async function body<S extends v.GenericSchema>(c: Context, schema: S): Promise<v.InferOutput<S> | Response> {
  let json: unknown;
  try {
    json = await c.req.json();
  } catch {
    return c.json({ error: "request body is not valid JSON" }, 400);
  }
  const result = v.safeParse(schema, json);
  if (!result.success) return c.json({ error: describeIssues(result.issues) }, 400);
  return result.output;
}

/**
 * Runs a long command. The answer waits for its first event: a command that
 * fails before reporting any progress (bad input, a conflict, an unknown
 * service) is answered with its status and a JSON error; otherwise progress
 * lines and then the result stream as NDJSON. A client that goes away does
 * not stop the command: it completes and its result is simply not sent.
 */
function streamed(work: (progress: Progress) => Promise<void>): Promise<Response> {
  const encoder = new TextEncoder();
  return new Promise((respond) => {
    let responded = false;
    let open = true;
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
      cancel() {
        open = false;
      },
    });
    const send = (event: ProgressEvent, status = 200) => {
      if (!responded) {
        responded = true;
        if ("error" in event) {
          open = false;
          respond(Response.json(event, { status }));
          return;
        }
        respond(new Response(stream, { headers: { "content-type": "application/x-ndjson" } }));
      }
      if (!open) return;
      try {
        controller.enqueue(encoder.encode(JSON.stringify(event) + "\n"));
      } catch {
        open = false; // the client went away; the command still completes
      }
    };
    work((line) => send({ progress: line }))
      .then(
        () => send({ ok: true }),
        (error) => send({ error: errorMessage(error) }, error instanceof CommandError ? error.status : 500),
      )
      .finally(() => {
        if (!open) return;
        open = false;
        try {
          controller.close();
        } catch {
          // cancelled meanwhile: nothing left to close
        }
      });
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
    app.post(path, async (c) => {
      const request = await body(c, schema);
      if (request instanceof Response) return request;
      return streamed((progress) => work(request, progress));
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
  app.onError((error, c) => c.json({ error: errorMessage(error) }, 500));
  return app;
}
