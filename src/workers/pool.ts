// The control plane's side of the workers: it starts them on the listening
// sockets it holds, restarts one that dies, sends them every routing and TLS
// change (a change is live once each has applied it), asks them to drain, and
// sums their request metrics. README "Workers" has the model.
import type { Subprocess } from "bun";
import { log } from "../log.ts";
import { sumRequests, type RequestSamples } from "../metrics.ts";
import type { DataPlane } from "../service/registry.ts";
import type { RoutingState } from "../service/routing-state.ts";
import type { Target } from "../service/target.ts";
import { sumTallies, type Tally } from "../service/verification.ts";
import { HANDOVER_ENV, HTTP_FD, HTTPS_FD, LAUNCH } from "../server/upgrade.ts";
import type { ProxySettings } from "../data/pipeline.ts";
import { CUT_EXIT_CODE, WORKER_ENV, type FromWorker, type HostCertificate, type TlsSnapshot, type ToWorker, type WorkerSettings } from "./protocol.ts";

/** A worker that has not applied a change by then is stuck: it is restarted (with the change). */
const APPLY_TIMEOUT_MS = 10_000;
/** How long a worker may take to start serving. */
const START_TIMEOUT_MS = 30_000;
/** A worker that dies this soon after starting, several times in a row, is in a crash loop: it is restarted after this delay. */
const QUICK_EXIT_MS = 1_000;
const QUICK_EXITS_BEFORE_DELAY = 3;
/** How long a metrics scrape waits for the workers' samples. */
const SAMPLES_TIMEOUT_MS = 2_000;

export interface WorkerPoolOptions {
  count: number;
  httpFd: number;
  httpsFd: number | undefined;
  /** The public HTTPS port (redirects). */
  httpsPort: number;
  proxy: ProxySettings;
  /** Trusted PROXY protocol senders; undefined: off. */
  proxyProtocol: { from: string[] } | undefined;
}

class WorkerProcess {
  /** Said hello: it gets every change from now on. */
  greeted = false;
  /** Its drain at a stop finished everything (false once it says otherwise, or is killed). */
  graceful = true;
  applied = 0;
  lastSamples: RequestSamples | undefined;
  readonly startedAt = Date.now();
  constructor(
    readonly index: number,
    readonly process: Subprocess,
  ) {}

  send(message: ToWorker) {
    try {
      this.process.send(message);
    } catch {
      // It is exiting; its exit handler takes it out of the pool.
    }
  }

  kill() {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill("SIGKILL");
  }
}

type Reply = Extract<FromWorker, { id: number }>;

export class WorkerPool implements DataPlane {
  private readonly workers = new Map<number, WorkerProcess>();
  private change = 0;
  private latestRouting: ToWorker | undefined;
  /** The latest TLS snapshot and its change number: a worker that greets gets all of it. */
  private latestTls: { change: number; snapshot: TlsSnapshot } | undefined;
  /** The certificates published so far, to send workers only what changed. */
  private publishedCertificates = new Map<string, HostCertificate>();
  /** Answers a worker's on-demand ask (set by the control plane). */
  onDemand: (host: string, service: string) => Promise<boolean> = async () => false;
  /** Publishes waiting for every worker to apply their change. */
  private appliedWaiters: { change: number; resolve: () => void }[] = [];
  private nextId = 0;
  private readonly replies = new Map<number, { waiting: Set<WorkerProcess>; answers: Reply[]; resolve: (answers: Reply[]) => void }>();
  /** The request series of workers that exited, so totals do not drop when one is restarted. */
  private retired: RequestSamples | undefined;
  private stopping = false;
  /** The server is leaving: see `leave`. */
  private leaving = false;
  private readonly exits = new Set<Promise<unknown>>();
  /** Quick exits in a row, by worker number. */
  private readonly quickExits = new Map<number, number>();

  constructor(private readonly options: WorkerPoolOptions) {}

  get pids(): number[] {
    return [...this.workers.values()].map((w) => w.process.pid);
  }

  /** Starts every worker; resolves once all serve, rejects with the reason one will not. */
  async start(): Promise<void> {
    const starting = Array.from({ length: this.options.count }, (_, i) => this.spawn(i + 1));
    await Promise.all(starting);
  }

  private spawn(index: number): Promise<void> {
    const settings: WorkerSettings = {
      index,
      httpFd: HTTP_FD,
      ...(this.options.httpsFd !== undefined ? { httpsFd: HTTPS_FD } : {}),
      httpsPort: this.options.httpsPort,
      proxy: this.options.proxy,
      ...(this.options.proxyProtocol ? { proxyProtocol: this.options.proxyProtocol } : {}),
    };
    const env: Record<string, string | undefined> = { ...process.env, [WORKER_ENV]: JSON.stringify(settings) };
    delete env[HANDOVER_ENV];
    let settle!: { resolve: () => void; reject: (error: Error) => void };
    const ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    let worker!: WorkerProcess;
    const child = Bun.spawn([LAUNCH.executable, ...LAUNCH.args], {
      env,
      stdio: ["ignore", "inherit", "inherit", this.options.httpFd, this.options.httpsFd ?? "ignore"],
      serialization: "json",
      ipc: (message: FromWorker) => this.received(worker, message, settle.resolve),
      onExit: (_process, code, signal) => {
        if (code === CUT_EXIT_CODE) worker.graceful = false;
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        settle.reject(new Error(`worker ${index} ${how} before it served (its log lines say why)`));
        this.exited(worker, how);
      },
    });
    worker = new WorkerProcess(index, child);
    this.workers.set(index, worker);
    this.exits.add(child.exited);
    const timer = setTimeout(() => settle.reject(new Error(`worker ${index} did not serve within ${START_TIMEOUT_MS / 1000}s`)), START_TIMEOUT_MS);
    const done = () => clearTimeout(timer);
    void ready.then(done, done);
    return ready;
  }

  private received(worker: WorkerProcess, message: FromWorker, ready: () => void) {
    switch (message.type) {
      case "hello":
        worker.greeted = true;
        if (this.latestTls) worker.send({ type: "tls", change: this.latestTls.change, state: { ...this.latestTls.snapshot, reset: true, removed: [] } });
        if (this.latestRouting) worker.send(this.latestRouting);
        if (this.leaving) worker.send({ type: "leave" });
        return;
      case "ready":
        return ready();
      case "applied":
        worker.applied = Math.max(worker.applied, message.change);
        return this.checkApplied();
      case "stopped":
        worker.graceful = message.graceful;
        return;
      case "on-demand":
        void this.onDemand(message.host, message.service)
          .catch(() => false)
          .then((allowed) => worker.send({ type: "on-demand", request: message.request, allowed }));
        return;
      default:
        return this.answered(worker, message);
    }
  }

  private exited(worker: WorkerProcess, how: string) {
    if (this.workers.get(worker.index) !== worker) return;
    this.workers.delete(worker.index);
    if (worker.lastSamples) this.retired = sumRequests(this.retired ? [this.retired, worker.lastSamples] : [worker.lastSamples]).requestSamples();
    for (const [id, pending] of this.replies) if (pending.waiting.delete(worker)) this.settleIfDone(id);
    this.checkApplied();
    if (this.stopping) return;
    const quick = Date.now() - worker.startedAt < QUICK_EXIT_MS;
    const inARow = quick ? (this.quickExits.get(worker.index) ?? 0) + 1 : 0;
    this.quickExits.set(worker.index, inARow);
    const delay = inARow >= QUICK_EXITS_BEFORE_DELAY ? QUICK_EXIT_MS : 0;
    log.error("Worker exited; restarting it", { worker: worker.index, pid: worker.process.pid, how, restart_in_ms: delay });
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(worker.index).catch((error: Error) => log.error("Worker restart failed", { worker: worker.index, error: error.message }));
    }, delay);
  }

  // ------------------------------------------------------------ changes

  private broadcast(message: ToWorker & { change: number }): Promise<void> {
    for (const worker of this.workers.values()) if (worker.greeted) worker.send(message);
    const applied = new Promise<void>((resolve) => this.appliedWaiters.push({ change: message.change, resolve }));
    const stuck = setTimeout(() => {
      for (const worker of this.workers.values()) {
        if (!worker.greeted || worker.applied >= message.change) continue;
        log.error("Worker did not apply a change in time; restarting it", { worker: worker.index, pid: worker.process.pid });
        worker.kill();
      }
    }, APPLY_TIMEOUT_MS);
    this.checkApplied();
    return applied.finally(() => clearTimeout(stuck));
  }

  /** Resolves the publishes every greeted worker has applied (a worker greeted later starts from the latest). */
  private checkApplied() {
    const greeted = [...this.workers.values()].filter((w) => w.greeted);
    const lowest = Math.min(...greeted.map((w) => w.applied), Number.POSITIVE_INFINITY);
    const done = this.appliedWaiters.filter((w) => w.change <= lowest);
    this.appliedWaiters = this.appliedWaiters.filter((w) => w.change > lowest);
    for (const waiter of done) waiter.resolve();
  }

  publish(state: RoutingState): Promise<void> {
    const message = { type: "routing" as const, change: ++this.change, state };
    this.latestRouting = message;
    return this.broadcast(message);
  }

  /** Sends the workers what changed since the previous snapshot. */
  publishTls(snapshot: TlsSnapshot): Promise<void> {
    const previous = this.publishedCertificates;
    const next = new Map(snapshot.certificates.map((c) => [c.host, c]));
    const certificates = snapshot.certificates.filter((c) => {
      const sent = previous.get(c.host);
      return !sent || sent.cert !== c.cert || sent.key !== c.key;
    });
    const removed = [...previous.keys()].filter((host) => !next.has(host));
    this.publishedCertificates = next;
    const change = ++this.change;
    this.latestTls = { change, snapshot };
    const state = { ...snapshot, reset: false, certificates, removed };
    return this.broadcast({ type: "tls", change, state });
  }

  // ------------------------------------------------------------ requests

  /** Sends a request to every greeted worker; resolves with the answers of those that did not exit first. */
  private ask(make: (id: number) => ToWorker, timeoutMs?: number): Promise<Reply[]> {
    const id = ++this.nextId;
    const waiting = new Set([...this.workers.values()].filter((w) => w.greeted));
    const answers = new Promise<Reply[]>((resolve) => this.replies.set(id, { waiting, answers: [], resolve }));
    for (const worker of waiting) worker.send(make(id));
    this.settleIfDone(id);
    if (timeoutMs === undefined) return answers;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<Reply[]>((resolve) => {
      timer = setTimeout(() => {
        const pending = this.replies.get(id);
        this.replies.delete(id);
        resolve(pending?.answers ?? []);
      }, timeoutMs);
    });
    return Promise.race([answers, late]).finally(() => clearTimeout(timer));
  }

  private answered(worker: WorkerProcess, reply: Reply) {
    if (reply.type === "samples") worker.lastSamples = reply.samples;
    const pending = this.replies.get(reply.id);
    if (!pending?.waiting.delete(worker)) return;
    pending.answers.push(reply);
    this.settleIfDone(reply.id);
  }

  private settleIfDone(id: number) {
    const pending = this.replies.get(id);
    if (!pending || pending.waiting.size > 0) return;
    this.replies.delete(id);
    pending.resolve(pending.answers);
  }

  /** Drains in every worker (see Drainer); a worker that dies meanwhile has nothing left in flight. */
  drain = async (service: string, targets: readonly Target[], timeoutMs: number, leaving: boolean): Promise<number> => {
    const addresses = targets.map((t) => t.address);
    const answers = await this.ask((id) => ({ type: "drain", id, service, targets: addresses, timeoutMs, leaving }));
    return answers.reduce((sum, a) => sum + (a.type === "drained" ? a.cancelled : 0), 0);
  };

  /**
   * The answers every worker counted on the service's verify window (see
   * DataPlane.tally). A worker that does not answer in time (or exited) is
   * left out of this read; a restarted one counts from its start.
   */
  tally = async (service: string): Promise<Tally> => {
    const answers = await this.ask((id) => ({ type: "tally", id, service }), SAMPLES_TIMEOUT_MS);
    return sumTallies(answers.map((a) => (a.type === "tally" ? a.tally : undefined)));
  };

  /** Every worker's request series, and those of workers that exited. */
  async samples(): Promise<RequestSamples[]> {
    const answers = await this.ask((id) => ({ type: "samples", id }), SAMPLES_TIMEOUT_MS);
    const live = answers.flatMap((a) => (a.type === "samples" ? [a.samples] : []));
    return this.retired ? [...live, this.retired] : live;
  }

  // ------------------------------------------------------------ stop

  /** Every worker, and any started from now on, answers the published health check with 503. */
  leave() {
    this.leaving = true;
    for (const worker of this.workers.values()) if (worker.greeted) worker.send({ type: "leave" });
  }

  /**
   * Workers stop accepting and finish what they have, within `graceMs`;
   * resolves once all have exited, true when every one finished everything.
   */
  async stop(graceMs: number): Promise<boolean> {
    this.stopping = true;
    const stopping = [...this.workers.values()];
    for (const worker of stopping) worker.send({ type: "stop", graceMs });
    const all = Promise.all(this.exits);
    const outcome = await Promise.race([all, Bun.sleep(graceMs + 5_000).then(() => "late" as const)]);
    if (outcome === "late") {
      for (const worker of stopping) {
        worker.graceful = false;
        worker.kill();
      }
    }
    await all;
    return stopping.every((w) => w.graceful);
  }

  /** Kills every worker (a start-up that failed). */
  kill() {
    this.stopping = true;
    for (const worker of this.workers.values()) worker.kill();
  }
}
