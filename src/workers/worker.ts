// A worker: the data plane alone, on the listening sockets the control plane
// holds (inherited as fds). It routes from the state the control plane sends,
// and answers its drain and metrics requests. It never touches the state
// file, the admin socket, health checks or ACME. It exits when told to, and
// when the control plane is gone.
import { log, surviveStrayErrors } from "../log.ts";
import { metrics } from "../metrics.ts";
import { DataPlaneListeners } from "../server/data-plane.ts";
import { CUT_EXIT_CODE, type FromWorker, type ToWorker, type WorkerSettings } from "./protocol.ts";
import { ReplicaCertificates, ReplicaRoutes } from "./replica.ts";

/** How long a worker whose control plane died lets its requests finish. */
const ORPHAN_GRACE_MS = 10_000;

function send(message: FromWorker) {
  process.send?.(message);
}

/** `acmeCachePath`: the ACME cache a fleet shares (`--tls-acme-cache-path`), where other hosts' HTTP-01 answers are found. */
export async function runWorker(settings: WorkerSettings, acmeCachePath?: string): Promise<void> {
  log.setProcessFields({ worker: settings.index });
  const routes = new ReplicaRoutes();
  const certificates = new ReplicaCertificates(acmeCachePath, (request, host, service) => send({ type: "on-demand", request, host, service }));
  let listeners: DataPlaneListeners | undefined;
  let stopping = false;
  let leaving = false;
  metrics.source = { inFlight: () => routes.inFlight(), targetHealth: () => [], certificateExpiry: () => [] };

  const stop = async (graceMs: number) => {
    if (stopping) return;
    stopping = true;
    const graceful = listeners ? await listeners.drain(graceMs) : true;
    log.info("Worker stopped", { pid: process.pid, graceful });
    send({ type: "stopped", graceful });
    log.flush();
    process.exit(graceful ? 0 : CUT_EXIT_CODE);
  };

  // The first routing and TLS states arrive before the worker starts accepting.
  const initial = { routing: false, tls: false };
  const start = () => {
    if (listeners || !initial.routing || !initial.tls) return;
    try {
      listeners = new DataPlaneListeners({
        routes,
        certificates,
        hostname: undefined,
        httpPort: 0,
        httpsPort: settings.httpsPort,
        httpFd: settings.httpFd,
        httpsFd: settings.httpsFd,
        redirectHttpsPort: settings.httpsPort,
        settings: settings.proxy,
        proxyProtocol: settings.proxyProtocol,
      });
    } catch (error) {
      log.error("Worker cannot serve", { error: (error as Error).message });
      log.flush();
      process.exit(1);
    }
    listeners.https?.update(certificates.entries());
    if (leaving) listeners.leave();
    log.info("Worker started", { pid: process.pid });
    send({ type: "ready" });
  };

  process.on("message", (message: ToWorker) => {
    switch (message.type) {
      case "routing":
        routes.apply(message.state);
        initial.routing = true;
        send({ type: "applied", change: message.change });
        return start();
      case "tls":
        // The listener reloads before the waiting handshakes go on (they are
        // woken by promises, which run after this), so that they find the
        // certificate. A change of the
        // running orders or challenges alone leaves it be.
        if (certificates.apply(message.state)) listeners?.https?.update(certificates.entries());
        initial.tls = true;
        send({ type: "applied", change: message.change });
        return start();
      case "drain":
        void routes.drain(message.service, message.targets, message.timeoutMs, message.leaving).then((cancelled) =>
          send({ type: "drained", id: message.id, cancelled }),
        );
        return;
      case "on-demand":
        return certificates.answered(message.request, message.allowed);
      case "samples":
        return send({ type: "samples", id: message.id, samples: metrics.requestSamples() });
      case "tally":
        return send({ type: "tally", id: message.id, tally: routes.tally(message.service) });
      case "leave":
        leaving = true;
        return listeners?.leave();
      case "stop":
        return void stop(message.graceMs);
    }
  });
  process.on("disconnect", () => {
    log.warn("Control plane gone; worker stopping", { pid: process.pid });
    void stop(ORPHAN_GRACE_MS);
  });
  // SIGTERM goes to the control plane, which stops its workers itself; a
  // signal sent to the whole process group must not cut them short.
  process.on("SIGTERM", () => {});
  process.on("SIGINT", () => {});
  surviveStrayErrors();
  send({ type: "hello" });
}
