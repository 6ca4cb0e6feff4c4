// The registry owns every service and the routing table built from them, and
// runs the admin commands on them, one at a time per service, recording each
// in the history; `deploy` is the whole zero-downtime sequence (README "How
// it works") in two readable functions, validation and `switchTo`, which
// `rollback` shares. The health-check gate is admission.ts, the state file's form of a
// service saved.ts, what `list` shows view.ts, and what each command did
// history.ts.
import { log } from "../log.ts";
import { metrics, type GaugeSource } from "../metrics.ts";
import { BasicAuth } from "../proxy/basic-auth.ts";
import { loadCustomPages, type CustomPages } from "../proxy/error-pages.ts";
import { loadHtpasswd } from "../proxy/htpasswd.ts";
import { Router } from "../routing/router.ts";
import type { SavedState, StateStore } from "../state/store.ts";
import { CertificateError, loadCustomCertificate, type Certificate } from "../tls/certificates.ts";
import { dnsHookProblem } from "../tls/dns-hook.ts";
import type { CertificateManager } from "../tls/manager.ts";
import { onDemandServiceFor } from "../tls/on-demand.ts";
import { formatDuration } from "../values.ts";
import { ROLLBACK_OPTIONS, type DeployRequest, type PauseRequest, type RollbackRequest, type RolloutSetRequest, type ServiceRequest, type StopRequest, type TargetsRequest } from "../admin/requests.ts";
import { HistoryStore } from "../state/history-store.ts";
import { History, NO_TARGETS, recordedOptions, type HistoryRecord, type RecordedCommand, type TargetSets } from "./history.ts";
import { admit } from "./admission.ts";
import { CommandError, type Progress } from "./command-error.ts";
import { RolloutSplit } from "./rollout.ts";
import { restoredService, savedService } from "./saved.ts";
import { ServiceTable } from "./service-table.ts";
import { serviceView, type ServiceView } from "./view.ts";
import { routingState, type RoutingState } from "./routing-state.ts";
import { resolveOptions, type ServiceOptions } from "./options.ts";
import { drainHere, healthCheckOf, Service, type Drainer, type ServiceRuntime } from "./service.ts";
import { Target } from "./target.ts";
import {
  DEFAULT_MAX_ERROR_PERCENT,
  DEFAULT_MIN_REQUESTS,
  describeFailures,
  describeTally,
  errorPercent,
  formatPercent,
  sumTallies,
  TargetTally,
  watchWindow,
  type Tally,
  type VerifyPolicy,
  type WindowOutcome,
} from "./verification.ts";

/**
 * Where proxied traffic runs. In one process, here: a change is live as soon
 * as it is made. With workers, in each of them: a change is live once every
 * worker has applied it, and drains wait on every worker.
 */
export interface DataPlane {
  /** Resolves once the traffic follows `state`. */
  publish(state: RoutingState): Promise<void>;
  drain: Drainer;
  /** What the service's verify window counted so far on these targets (in every worker). */
  tally(service: string, targets: readonly Target[]): Promise<Tally>;
}

/** What a deploy puts in place besides the targets, validated and loaded. */
interface DeploySettings {
  options: ServiceOptions;
  pages: CustomPages | undefined;
  basicAuth: BasicAuth | undefined;
  certificate: Certificate | undefined;
}

/** The targets a deploy switches to, how long it waits for them, and how it verifies them afterwards. */
interface Switch {
  writers: string[];
  readers: string[];
  deployTimeout: number;
  force: boolean;
  verify?: VerifyPolicy;
}

/** What a service had before a switch: where a failed verify window sends it back. */
interface Previous {
  settings: DeploySettings;
  writers: Target[];
  readers: Target[];
}

/** A command's request fields as the client sent them, for its history record. */
export type Given = Record<string, unknown>;

/** The reason a command failed: what its client is told, or for an unexpected error its message (the client is told to see the log). */
function errorMessage(error: unknown): string {
  return error instanceof CommandError ? error.message : `internal error: ${(error as Error)?.message ?? String(error)}`;
}

const THIS_PROCESS: DataPlane = {
  publish: () => Promise.resolve(),
  drain: drainHere,
  tally: (_service, targets) => Promise.resolve(sumTallies(targets.map((t) => t.tally))),
};

const addressList = (targets: readonly Target[]) => targets.map((t) => t.address).join(", ");

/** The verify window a deploy asks for, validated; undefined without one. */
function verifyPolicy(request: DeployRequest): VerifyPolicy | undefined {
  const limits = request.verifyMaxErrors !== undefined || request.verifyMinRequests !== undefined;
  if (!request.verifyWindow) {
    if (limits) throw new CommandError("--verify-max-errors and --verify-min-requests need --verify-window");
    return undefined;
  }
  return {
    windowMs: request.verifyWindow,
    maxErrorPercent: request.verifyMaxErrors ?? DEFAULT_MAX_ERROR_PERCENT,
    minRequests: request.verifyMinRequests ?? DEFAULT_MIN_REQUESTS,
  };
}

/** The targets a verify window counts get a tally of that window; `undefined` stops their counting. */
function countAnswers(targets: readonly Target[], window: number | undefined) {
  for (const target of targets) target.tally = window === undefined ? undefined : new TargetTally(window);
}

/** Targets that passed their checks (or were forced), marked as the command switches to them. */
function markHealthy(targets: Target[]) {
  for (const target of targets) target.health = "healthy";
}

export class Registry extends ServiceTable implements GaugeSource {
  /** Custom certificates by service, validated at deploy. */
  private readonly customCertificates = new Map<string, Certificate>();
  /** What the commands did to each service (README "History and rollback"); loaded by `restore`. */
  private history = new History();
  /** Changes to one service run one after another; different services do not wait for each other. */
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Verify windows started, to number them (see TargetTally). */
  private windows = 0;

  constructor(
    private readonly store: StateStore,
    readonly certificates?: CertificateManager,
    private readonly dataPlane: DataPlane = THIS_PROCESS,
    private readonly historyStore = new HistoryStore(store.dir),
  ) {
    super();
  }

  /** How each service drains and reports health changes: through the data plane. */
  private readonly runtime: ServiceRuntime = {
    drainer: (service, targets, timeoutMs, leaving) => this.dataPlane.drain(service, targets, timeoutMs, leaving),
    monitored: true,
    healthChanged: () => void this.publish(),
  };

  /** The routing state workers follow. */
  routingState(): RoutingState {
    return routingState(this.services.values(), (s) => this.pages.get(s.name));
  }

  /** Makes the current routing live everywhere traffic runs. */
  private publish(): Promise<void> {
    return this.dataPlane.publish(this.routingState());
  }

  /** Set while this process hands its state to a successor: no command may change it. */
  private frozen: string | undefined;

  /**
   * Stops accepting commands that change the state, and resolves once the
   * ones already running have finished, so the state on disk is final.
   */
  async freeze(reason: string): Promise<void> {
    this.frozen = reason;
    await Promise.all(this.locks.values());
  }

  /** Accepts commands again (the handover did not happen). */
  thaw() {
    this.frozen = undefined;
  }

  /**
   * After a handover the successor owns the state, but requests held here by
   * a pause are still here: they follow what it saves. A resume releases
   * them, a stop answers them 503, a removal 404.
   */
  async followSaved(): Promise<void> {
    if ([...this.services.values()].every((s) => s.pause.mode === "running")) return;
    const saved = this.store.peek();
    if (!saved) return;
    let changed = false;
    for (const service of [...this.services.values()]) {
      const pause = service.pause;
      if (pause.mode === "running") continue;
      const next = saved.services.find((s) => s.name === service.name);
      if (!next) {
        this.services.delete(service.name);
        this.router = new Router(this.services.values());
        pause.resume();
      } else if (next.mode === "running") pause.resume();
      else if (next.mode === "stopped" && pause.mode !== "stopped") pause.stop(next.stopMessage);
      else continue;
      changed = true;
    }
    if (changed) await this.publish();
  }

  /** Writes the state now (before a successor reads it). */
  save() {
    this.store.save(this.snapshot());
  }

  private serialized<T>(name: string, work: () => Promise<T>): Promise<T> {
    if (this.frozen) return Promise.reject(new CommandError(this.frozen, 503));
    const previous = this.locks.get(name) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => {});
    this.locks.set(name, tail);
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    });
    return next;
  }

  /**
   * Runs a command on a service (one at a time, as `serialized`) and records
   * it in the history, failed or not: the targets before and after, how long
   * it took, and its outcome. A command on a service that does not exist
   * (anything but a deploy) fails with "service not found" and leaves no
   * record; nor does one refused because parachute is being upgraded, so
   * that nothing is recorded here once the successor owns the history.
   */
  private recorded(command: RecordedCommand, request: { service: string }, given: Given | undefined, progress: Progress, work: () => Promise<void>): Promise<void> {
    const name = request.service;
    return this.serialized(name, async () => {
      if (command !== "deploy" && !this.services.has(name)) return work();
      const time = new Date().toISOString();
      const started = performance.now();
      const before = this.targetSets(name);
      let failure: unknown;
      try {
        await work();
      } catch (error) {
        failure = error;
      }
      this.history.record(name, {
        time,
        command,
        options: recordedOptions(given ?? request),
        before,
        after: this.targetSets(name),
        durationMs: Math.round(performance.now() - started),
        ...(failure === undefined ? { outcome: "ok" } : { outcome: "failed", error: errorMessage(failure) }),
      });
      this.persistHistory(progress);
      if (failure !== undefined) throw failure;
    });
  }

  private targetSets(name: string): TargetSets {
    const service = this.services.get(name);
    if (!service) return NO_TARGETS;
    const addresses = (targets: readonly Target[] | undefined) => (targets ?? []).map((t) => t.address);
    return { targets: addresses(service.targets), readTargets: addresses(service.readTargets), rolloutTargets: addresses(service.rolloutTargets) };
  }

  /** The recorded commands of a service, oldest first; undefined when it has none (README "History and rollback"). */
  historyOf(name: string): readonly HistoryRecord[] | undefined {
    return this.history.of(name);
  }

  private rebuildRouter() {
    this.router = new Router(this.services.values());
    const router = this.router;
    this.certificates?.sync(this.services.values(), this.customCertificates, (host) => onDemandServiceFor(router, host));
  }

  // ---------------------------------------------------------------- deploy

  deploy(request: DeployRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("deploy", request, given, progress, async () => {
      const started = performance.now();
      try {
        await this.runDeploy(request, progress);
        metrics.recordDeploy(request.service, true, (performance.now() - started) / 1000);
      } catch (error) {
        metrics.recordDeploy(request.service, false, (performance.now() - started) / 1000);
        throw error;
      }
    });
  }

  private async runDeploy(request: DeployRequest, progress: Progress): Promise<void> {
    const name = request.service;

    // 1. Validate everything first; nothing changes on any error.
    const options = this.optionsFrom(request);
    const pages = options.errorPages ? this.loadPages(options.errorPages) : undefined;
    const basicAuth = options.basicAuthFile ? this.loadBasicAuth(name, options.basicAuthFile) : undefined;
    const certificate = this.loadCertificate(options);
    const verify = verifyPolicy(request);
    this.checkConflicts(name, options);
    log.info("Deploying", { service: name, targets: request.targets, hosts: options.hosts });
    await this.switchTo(
      name,
      { options, pages, basicAuth, certificate },
      { writers: request.targets, readers: request.readTargets, deployTimeout: request.deployTimeout, force: request.force, verify },
      progress,
    );
  }

  /**
   * Steps 2 to 5 of a deploy (README "How it works"), shared by deploy and
   * rollback: health-check the new targets, switch to them with these
   * settings, save, and drain the old targets (within the options' drain
   * timeout). With a verify policy, the old targets wait, kept, through the
   * verify window before they drain (see `verify`).
   */
  private async switchTo(name: string, settings: DeploySettings, to: Switch, progress: Progress): Promise<void> {
    const started = performance.now();
    const { options, pages, basicAuth, certificate } = settings;
    const existing = this.services.get(name);

    // 2. Health-check every new target until each has passed once.
    const writers = this.targetsFor(existing, to.writers);
    const readers = this.targetsFor(existing, to.readers.filter((t) => !to.writers.includes(t)));
    const admitted = await admit([...writers, ...readers], { name, service: existing, config: healthCheckOf(options), timeoutMs: to.deployTimeout, force: to.force, progress });

    // Hosts may have been claimed by another service while we waited.
    this.checkConflicts(name, options);
    markHealthy(admitted);

    // 3. Atomic switch: from here on new requests go to the new targets only.
    let service = existing;
    let old: Target[] = [];
    let previous: Previous | undefined;
    let watched: Target[] = [];
    if (service) {
      previous = { settings: this.settingsOf(service), writers: [...service.targets], readers: [...service.readTargets] };
      // Counting starts before the switch is published, so that the first answers count.
      const live = service.live;
      if (to.verify) watched = [...writers, ...readers].filter((t) => !live.includes(t));
      countAnswers(watched, ++this.windows);
      if (watched.length) for (const target of live) service.kept.add(target);
      old = this.applySettings(service, settings, { writers, readers });
    } else {
      service = new Service(name, options, writers, this.runtime);
      service.cutover({ readers });
      this.services.set(name, service);
      this.applySettings(service, settings);
    }
    this.rebuildRouter();
    await this.publish();

    // 5 (first half). Persist as soon as the switch is made: a crash while
    // draining must not bring the old targets back.
    this.persist(progress);
    log.info("Deployed", {
      service: name,
      targets: writers.map((t) => t.address),
      duration_ms: Math.round(performance.now() - started),
    });

    if (to.verify) await this.verify(service, watched, previous, to.verify, progress);

    // 4. Old targets drain; deploy returns once they are done.
    if (old.length) {
      progress(`Draining ${old.map((t) => t.address).join(", ")} (up to ${formatDuration(options.drainTimeout)})`);
      await service.drain(old, options.drainTimeout);
    }
  }

  /** A service's current settings, as a deploy puts them in place. */
  private settingsOf(service: Service): DeploySettings {
    const name = service.name;
    return { options: service.options, pages: this.pages.get(name), basicAuth: service.basicAuth, certificate: this.customCertificates.get(name) };
  }

  /**
   * Puts settings in place on a service and, given targets, switches to
   * them; returns the targets that left (see Service.cutover). The caller
   * rebuilds the router and publishes.
   */
  private applySettings(service: Service, settings: DeploySettings, targets?: { writers: Target[]; readers: Target[] }): Target[] {
    const name = service.name;
    const healthChanged = JSON.stringify(service.healthCheck) !== JSON.stringify(healthCheckOf(settings.options));
    service.options = settings.options;
    const old = targets ? service.cutover(targets) : [];
    if (healthChanged) service.restartMonitors();
    service.basicAuth = settings.basicAuth;
    if (settings.pages) this.pages.set(name, settings.pages);
    else this.pages.delete(name);
    if (settings.certificate) this.customCertificates.set(name, settings.certificate);
    else this.customCertificates.delete(name);
    return old;
  }

  /**
   * The verify window (README "History and rollback"): the new targets'
   * answers are counted while the previous targets, out of rotation, are
   * kept. Passed, it returns and the old targets drain. Over the limit, the
   * service goes back to its previous targets and settings at once (one
   * publish, as atomic as the switch), the new targets drain (what they have
   * in flight finishes), and the deploy fails naming the error rate and the
   * first failing requests.
   */
  private async verify(service: Service, watched: Target[], previous: Previous | undefined, policy: VerifyPolicy, progress: Progress): Promise<void> {
    if (!previous || watched.length === 0) {
      progress(`Not verifying: ${previous ? "no new targets" : "a new service has no previous targets"} to switch back from`);
      return;
    }
    const label = addressList(watched);
    const back = addressList(previous.writers);
    progress(
      `Verifying ${label} for ${formatDuration(policy.windowMs)}: back to ${back} if over ${formatPercent(policy.maxErrorPercent)} of at least ${policy.minRequests} requests fail`,
    );
    log.info("Verifying", { service: service.name, targets: watched.map((t) => t.address), window_ms: policy.windowMs, max_errors_percent: policy.maxErrorPercent, min_requests: policy.minRequests });
    let outcome: WindowOutcome;
    try {
      outcome = await watchWindow(label, policy, () => this.dataPlane.tally(service.name, watched), progress);
    } finally {
      countAnswers(watched, undefined);
      service.kept.clear();
    }
    const tally = outcome.tally;
    if (outcome.passed) {
      service.monitor(); // the old targets' checks stop: they drain now
      await this.publish(); // the workers stop counting
      const unjudged = tally.requests < policy.minRequests ? ` (fewer than ${policy.minRequests} requests: not judged)` : "";
      progress(`Verified ${label}: ${describeTally(tally)}${unjudged}`);
      log.info("Verified", { service: service.name, targets: watched.map((t) => t.address), requests: tally.requests, errors: tally.errors });
      return;
    }

    // Hosts the deploy let go of may have been taken by another service meanwhile: then only the targets go back.
    const conflict = this.router.conflict({ name: service.name, hosts: previous.settings.options.hosts, pathPrefixes: previous.settings.options.pathPrefixes });
    const settings = conflict ? this.settingsOf(service) : previous.settings;
    const drainTimeout = service.options.drainTimeout;
    const leaving = this.applySettings(service, settings, { writers: previous.writers, readers: previous.readers });
    this.rebuildRouter();
    await this.publish();
    this.persist(progress);
    const rate = formatPercent(errorPercent(tally));
    log.warn("Deploy rolled back: error rate over the limit", {
      service: service.name,
      targets: watched.map((t) => t.address),
      back_to: previous.writers.map((t) => t.address),
      requests: tally.requests,
      errors: tally.errors,
      first_failures: describeFailures(tally.failures),
    });
    progress(`Error rate ${rate} over ${formatPercent(policy.maxErrorPercent)} (${tally.errors} of ${tally.requests} requests failed): switched back to ${back}`);
    if (conflict) progress(`Warning: the previous hosts are now used by service ${conflict.name}; the service keeps this deploy's options`);
    if (leaving.length) {
      progress(`Draining ${addressList(leaving)} (up to ${formatDuration(drainTimeout)})`);
      await service.drain(leaving, drainTimeout);
    }
    throw new CommandError(
      `error rate ${rate} of ${tally.requests} requests to ${label} is over ${formatPercent(policy.maxErrorPercent)}; ` +
        `traffic is back on ${back} (first failures: ${describeFailures(tally.failures)})`,
    );
  }

  private optionsFrom(request: DeployRequest): ServiceOptions {
    const options = resolveOptions(request);
    const tls = options.tls;
    const onDemand = Boolean(options.tlsOnDemandUrl);
    if (onDemand && !tls) throw new CommandError("--tls-on-demand-url needs --tls");
    if (onDemand && request.tlsCertificatePath) throw new CommandError("--tls-on-demand-url cannot be combined with --tls-certificate-path");
    if (tls && !onDemand && request.hosts.length === 0) throw new CommandError("--tls needs at least one --host (or --tls-on-demand-url)");
    if (options.tlsChallenge === "dns-01" && !request.tlsDnsHook) throw new CommandError("--tls-challenge dns-01 needs --tls-dns-hook CMD");
    if (request.tlsDnsHook && options.tlsChallenge !== "dns-01") {
      throw new CommandError(`--tls-dns-hook is for --tls-challenge dns-01, not ${options.tlsChallenge}`);
    }
    if (request.tlsDnsHook) {
      const problem = dnsHookProblem(request.tlsDnsHook);
      if (problem) throw new CommandError(problem);
    }
    const wildcard = request.hosts.find((h) => h.startsWith("*."));
    // An on-demand wildcard host is never ordered itself: its names are, one by one.
    if (tls && wildcard && !request.tlsCertificatePath && options.tlsChallenge !== "dns-01" && !onDemand) {
      throw new CommandError(
        `wildcard host ${wildcard} needs DNS-01 (--tls-dns-hook CMD) or a custom certificate (--tls-certificate-path and --tls-private-key-path): ACME ${options.tlsChallenge === "auto" ? "http-01 and tls-alpn-01" : options.tlsChallenge} cannot issue wildcards`,
      );
    }
    if (request.canonicalHost && !request.hosts.includes(request.canonicalHost)) {
      throw new CommandError(`canonical host "${request.canonicalHost}" must be one of the service's hosts`);
    }
    // As kamal-proxy: an unbuffered response is on its way to the client before its size is known.
    if (options.maxResponseBody > 0 && !options.bufferResponses) throw new CommandError("--max-response-body needs --buffer-responses");
    if (Boolean(request.tlsCertificatePath) !== Boolean(request.tlsPrivateKeyPath)) {
      throw new CommandError("--tls-certificate-path and --tls-private-key-path go together (both or neither)");
    }
    return options;
  }

  private loadCertificate(options: ServiceOptions): Certificate | undefined {
    if (!options.tlsCertificatePath || !options.tlsPrivateKeyPath) return undefined;
    try {
      return loadCustomCertificate(options.tlsCertificatePath, options.tlsPrivateKeyPath, options.hosts);
    } catch (error) {
      if (error instanceof CertificateError) throw new CommandError(error.message);
      throw error;
    }
  }

  private loadPages(dir: string): CustomPages {
    try {
      return loadCustomPages(dir);
    } catch (error) {
      throw new CommandError((error as Error).message);
    }
  }

  private loadBasicAuth(name: string, file: string): BasicAuth {
    try {
      return new BasicAuth(loadHtpasswd(file), name);
    } catch (error) {
      throw new CommandError((error as Error).message);
    }
  }

  private checkConflicts(name: string, options: ServiceOptions) {
    const other = this.router.conflict({ name, hosts: options.hosts, pathPrefixes: options.pathPrefixes });
    if (other) throw new CommandError("host is used by another service", 409);
  }

  /** Target objects for these addresses, reusing the service's own (with their in-flight counts). */
  private targetsFor(service: Service | undefined, addresses: string[]): Target[] {
    return [...new Set(addresses)].map((address) => service?.find(address) ?? new Target(address));
  }

  // ---------------------------------------------------------------- rollback

  /**
   * `rollback`: back to the targets of the previous successful deploy
   * (History.rollbackPoint), through the deploy's own health check, switch
   * and drain. The service keeps its current options but for the timing and
   * health-check ones given; files (error pages, certificate, credentials)
   * stay as loaded.
   */
  rollback(request: RollbackRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("rollback", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      const point = this.history.rollbackPoint(service.name);
      if (!point) throw new CommandError(`service ${service.name} has no previous deploy to roll back to`, 409);
      const overrides = Object.fromEntries(Object.keys(ROLLBACK_OPTIONS).filter((key) => Object.hasOwn(request, key)).map((key) => [key, request[key as keyof RollbackRequest]]));
      const options: ServiceOptions = { ...service.options, ...overrides };
      const { targets, readTargets } = point.after;
      progress(`Rolling back ${service.name} to ${targets.join(", ")}${readTargets.length ? ` (read: ${readTargets.join(", ")})` : ""}, as deployed at ${point.time}`);
      log.info("Rolling back", { service: service.name, targets, read_targets: readTargets, deployed_at: point.time });
      const settings = { ...this.settingsOf(service), options };
      await this.switchTo(service.name, settings, { writers: targets, readers: readTargets, deployTimeout: request.deployTimeout, force: false }, progress);
    });
  }

  // ---------------------------------------------------------------- remove

  remove(request: ServiceRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("remove", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      this.services.delete(service.name);
      this.pages.delete(service.name);
      this.customCertificates.delete(service.name);
      this.rebuildRouter();
      await this.publish();
      this.persist(progress);
      service.dispose();
      service.pause.resume(); // requests waiting in a pause are answered now (404 from here on)
      log.info("Service removed", { service: service.name });
      const all = [...service.live, ...service.draining];
      await service.drain(all, request.drainTimeout ?? service.options.drainTimeout);
    });
  }

  private mustGet(name: string): Service {
    const service = this.services.get(name);
    if (!service) throw new CommandError("service not found", 404);
    return service;
  }

  // ---------------------------------------------------------------- targets

  /** `add`: new writers join the rotation once healthy (same wait and failure as deploy). */
  add(request: TargetsRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("add", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      const present = request.targets.filter((a) => service.targets.some((t) => t.address === a));
      if (present.length) throw new CommandError(`target ${present.join(", ")} is already in service ${service.name}`);
      const added = this.targetsFor(service, request.targets);
      const admitted = await admit(added, { name: service.name, service, config: service.healthCheck, timeoutMs: request.deployTimeout, force: false, progress });
      if (this.services.get(service.name) !== service) throw new CommandError("service was removed while its targets were checked", 409);
      markHealthy(admitted);
      const old = service.cutover({ writers: [...service.targets, ...added] });
      await this.publish();
      this.persist(progress);
      log.info("Targets added", { service: service.name, targets: request.targets });
      await service.drain(old, service.options.drainTimeout);
    });
  }

  /** `rm`: writers leave the rotation and drain like old targets in a deploy. */
  rm(request: TargetsRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("rm", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      const unknown = request.targets.filter((a) => !service.targets.some((t) => t.address === a));
      if (unknown.length) throw new CommandError(`target ${unknown.join(", ")} is not in service ${service.name}`);
      const remaining = service.targets.filter((t) => !request.targets.includes(t.address));
      if (remaining.length === 0) {
        throw new CommandError(`cannot remove the last target of service ${service.name} (use "parachute remove ${service.name}")`);
      }
      const old = service.cutover({ writers: remaining });
      await this.publish();
      this.persist(progress);
      log.info("Targets removed", { service: service.name, targets: request.targets });
      const timeout = request.drainTimeout ?? service.options.drainTimeout;
      progress(`Draining ${old.map((t) => t.address).join(", ")} (up to ${formatDuration(timeout)})`);
      await service.drain(old, timeout);
    });
  }

  // ---------------------------------------------------------------- maintenance

  pause(request: PauseRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("pause", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      service.pause.pause(request.maxPause);
      await this.publish();
      this.persist(progress);
      log.info("Service paused", { service: service.name, max_pause_ms: request.maxPause });
      await service.drainInFlight(request.drainTimeout);
    });
  }

  stop(request: StopRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("stop", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      service.pause.stop(request.message);
      await this.publish();
      this.persist(progress);
      log.info("Service stopped", { service: service.name, message: request.message });
      await service.drainInFlight(request.drainTimeout);
    });
  }

  resume(request: ServiceRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("resume", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      service.pause.resume();
      await this.publish();
      this.persist(progress);
      log.info("Service resumed", { service: service.name });
    });
  }

  // ---------------------------------------------------------------- rollout

  /** `rollout deploy`: a second, health-checked target set beside the writers. */
  rolloutDeploy(request: TargetsRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("rollout deploy", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      const targets = this.targetsFor(service, request.targets);
      const admitted = await admit(targets, { name: service.name, service, config: service.healthCheck, timeoutMs: request.deployTimeout, force: false, progress });
      if (this.services.get(service.name) !== service) throw new CommandError("service was removed while its targets were checked", 409);
      markHealthy(admitted);
      const old = service.cutover({ rollout: targets });
      await this.publish();
      this.persist(progress);
      log.info("Rollout deployed", { service: service.name, targets: request.targets });
      await service.drain(old, request.drainTimeout ?? service.options.drainTimeout);
    });
  }

  rolloutSet(request: RolloutSetRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("rollout set", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      if (!service.rolloutTargets) {
        throw new CommandError(`service ${service.name} has no rollout targets (run "parachute rollout deploy" first)`);
      }
      service.split = new RolloutSplit(request.percent, [...new Set(request.list)]);
      await this.publish();
      this.persist(progress);
      log.info("Rollout split set", { service: service.name, percent: request.percent, list: request.list });
    });
  }

  rolloutStop(request: ServiceRequest, progress: Progress, given?: Given): Promise<void> {
    return this.recorded("rollout stop", request, given, progress, async () => {
      const service = this.mustGet(request.service);
      if (!service.rolloutTargets) throw new CommandError(`service ${service.name} has no rollout in progress`);
      const old = service.cutover({ rollout: null });
      service.split = new RolloutSplit();
      await this.publish();
      this.persist(progress);
      log.info("Rollout stopped", { service: service.name });
      await service.drain(old, request.drainTimeout ?? service.options.drainTimeout);
    });
  }

  // ---------------------------------------------------------------- list

  /** `checkTimes`: with the time of each target's last check (the status page shows it; `list` does not). */
  list(options: { checkTimes?: boolean } = {}): ServiceView[] {
    return [...this.services.values()].sort((a, b) => a.name.localeCompare(b.name)).map((s) => serviceView(s, options));
  }

  // ---------------------------------------------------------------- metrics

  inFlight() {
    return [...this.services.values()].map((s) => s.load());
  }

  targetHealth() {
    return this.list().flatMap((s) => s.targets.map((t) => ({ service: s.name, target: t.address, state: t.state })));
  }

  certificateExpiry(): { host: string; expiresAt: number }[] {
    return this.certificates?.expiries() ?? [];
  }

  // ---------------------------------------------------------------- state

  private snapshot(): SavedState {
    return { version: 1, services: [...this.services.values()].map(savedService) };
  }

  /**
   * Saves the routing state. Called once a change is live, so a failure (a
   * full disk) does not undo or fail the change: traffic already follows it.
   * It is logged, and told to the waiting client as a warning: every command
   * that changes the state passes its progress here.
   */
  private persist(progress: Progress) {
    try {
      this.store.save(this.snapshot());
    } catch (error) {
      const reason = (error as Error).message;
      log.error("Cannot save state", { file: this.store.file, error: reason });
      progress(`Warning: cannot save state (${reason}): the change is live but will not survive a restart`);
    }
  }

  /** Saves the history; like the state, a failure is logged and warned about, never undoes the command. */
  private persistHistory(progress: Progress) {
    try {
      this.historyStore.save(this.history);
    } catch (error) {
      const reason = (error as Error).message;
      log.error("Cannot save history", { file: this.historyStore.file, error: reason });
      progress(`Warning: cannot save the history (${reason}): this command's record will not survive a restart`);
    }
  }

  /** Brings back saved services. Targets serve at once and are re-checked in the background. */
  restore() {
    const saved = this.historyStore.load();
    if (saved.problem) log.error("History file is corrupt; starting with an empty history", { file: this.historyStore.file, problem: saved.problem, kept_as: saved.setAside });
    this.history = saved.history;
    const { state, problem, setAside } = this.store.load();
    if (problem) log.error("State file is corrupt; starting empty", { file: this.store.file, problem, kept_as: setAside });
    for (const saved of state.services) {
      const options = saved.options;
      // A hand-edited file may give one (host, path) to two services: the first keeps it.
      const owner = new Router(this.services.values()).conflict({ name: saved.name, hosts: options.hosts, pathPrefixes: options.pathPrefixes });
      if (owner) {
        log.error("Saved service skipped: its host is used by another service", { service: saved.name, owner: owner.name });
        continue;
      }
      const service = restoredService(saved, this.runtime);
      if (options.errorPages) {
        try {
          this.pages.set(saved.name, loadCustomPages(options.errorPages));
        } catch (error) {
          log.warn("Error pages unavailable; using built-in pages", { service: saved.name, error: (error as Error).message });
        }
      }
      if (options.basicAuthFile && !service.basicAuth) {
        // State written by hand without the entries: the file is read now, and
        // without it the service refuses every request rather than open up.
        try {
          service.basicAuth = new BasicAuth(loadHtpasswd(options.basicAuthFile), saved.name);
        } catch (error) {
          service.basicAuth = new BasicAuth([], saved.name);
          log.error("Basic auth credentials unavailable; every request is refused", { service: saved.name, error: (error as Error).message });
        }
      }
      if (options.tlsCertificatePath) {
        try {
          const certificate = this.loadCertificate(options);
          if (certificate) this.customCertificates.set(saved.name, certificate);
        } catch (error) {
          log.error("Custom certificate unavailable; HTTPS for this service has no certificate", { service: saved.name, error: (error as Error).message });
        }
      }
      this.services.set(saved.name, service);
    }
    this.rebuildRouter();
    if (this.services.size) log.info("State restored", { services: [...this.services.keys()] });
  }

  // ---------------------------------------------------------------- shutdown

  dispose() {
    for (const service of this.services.values()) service.dispose();
  }
}
