// A worker's copy of the control plane's services and certificates. It is
// rebuilt from each RoutingState and TlsState the control plane sends, and it
// keeps its Target objects across changes, since they count this worker's
// requests in flight (which drains wait for). It runs no health checks: the
// control plane's verdicts arrive with the state.
import { BasicAuth } from "../proxy/basic-auth.ts";
import type { Credential } from "../proxy/htpasswd.ts";
import { Router } from "../routing/router.ts";
import type { CertificateView } from "../data/pipeline.ts";
import type { ServiceLoad } from "../metrics.ts";
import { RolloutSplit } from "../service/rollout.ts";
import type { RoutingState, ServiceState, TargetState } from "../service/routing-state.ts";
import { drainHere, Service } from "../service/service.ts";
import { ServiceTable } from "../service/service-table.ts";
import { Target } from "../service/target.ts";
import { sumTallies, TargetTally, type Tally } from "../service/verification.ts";
import { certificateHostsFor } from "../tls/certificates.ts";
import { SharedChallenges } from "../tls/fleet.ts";
import type { HostCertificate, TlsState } from "./protocol.ts";

const REPLICA = { drainer: drainHere, monitored: false, healthChanged: () => {} };

export class ReplicaRoutes extends ServiceTable {
  /** Services the control plane removed, kept while it drains them. */
  private readonly removed = new Map<string, Service>();

  apply(state: RoutingState) {
    const names = new Set(state.services.map((s) => s.name));
    for (const [name, service] of this.services) {
      if (names.has(name)) continue;
      this.services.delete(name);
      this.pages.delete(name);
      this.removed.set(name, service);
      service.pause.resume(); // requests waiting in a pause are answered now (404 from here on)
    }
    for (const saved of state.services) this.applyService(saved);
    this.router = new Router(this.services.values());
  }

  private applyService(saved: ServiceState) {
    let service = this.services.get(saved.name);
    if (!service) {
      service = this.removed.get(saved.name) ?? new Service(saved.name, saved.options, [], REPLICA);
      this.removed.delete(saved.name);
      this.services.set(saved.name, service);
    }
    const current = service;
    current.options = saved.options;
    const targets = (states: TargetState[]) =>
      states.map((state) => {
        const target = current.find(state.address) ?? new Target(state.address);
        target.health = state.health;
        return target;
      });
    current.cutover({ writers: targets(saved.writers), readers: targets(saved.readers), rollout: saved.rollout ? targets(saved.rollout) : null });
    countAnswers(current, saved.verifying);
    // Old targets stay (counting their requests) until drained, or until nothing is left on them.
    for (const target of current.draining) if (target.inflightCount === 0) current.draining.delete(target);
    current.split = new RolloutSplit(saved.split.percent, saved.split.list);
    const pause = current.pause;
    if (saved.mode === "paused") pause.pause(saved.maxPauseMs);
    else if (saved.mode === "stopped" && (pause.mode !== "stopped" || pause.message !== saved.stopMessage)) pause.stop(saved.stopMessage);
    else if (saved.mode === "running" && pause.mode !== "running") pause.resume();
    // Rebuilt only when the entries change (a deploy): it remembers verified credentials.
    if (!saved.basicAuth) current.basicAuth = undefined;
    else if (!current.basicAuth || !sameEntries(current.basicAuth.entries, saved.basicAuth)) current.basicAuth = new BasicAuth(saved.basicAuth, saved.name);
    if (saved.pages) this.pages.set(saved.name, new Map(saved.pages));
    else this.pages.delete(saved.name);
  }

  /** Waits for this worker's requests on these targets (see Drainer). */
  async drain(name: string, addresses: string[], timeoutMs: number, leaving: boolean): Promise<number> {
    const service = this.services.get(name) ?? this.removed.get(name);
    if (!service) return 0;
    const targets = addresses.map((a) => service.find(a)).filter((t): t is Target => t !== undefined);
    const cancelled = await drainHere(name, targets, timeoutMs, leaving);
    for (const target of targets) if (!service.live.includes(target)) service.draining.delete(target);
    if (this.removed.get(name) === service && service.draining.size === 0) this.removed.delete(name);
    return cancelled;
  }

  /** This worker's counts of a service's verify window (see DataPlane.tally). */
  tally(name: string): Tally {
    const service = this.services.get(name);
    return sumTallies(service ? [...service.live, ...service.draining].map((t) => t.tally) : []);
  }

  /** Requests in flight by service, for the control plane's /metrics. */
  inFlight(): ServiceLoad[] {
    return [...this.services.values()].map((s) => s.load());
  }
}

/** The targets a verify window counts get a tally (a new one when the window is new); the others none. */
function countAnswers(service: Service, verifying: ServiceState["verifying"]) {
  for (const target of [...service.live, ...service.draining]) {
    if (!verifying?.targets.includes(target.address)) target.tally = undefined;
    else if (target.tally?.window !== verifying.window) target.tally = new TargetTally(verifying.window);
  }
}

function sameEntries(a: readonly Credential[], b: readonly Credential[]): boolean {
  return a.length === b.length && a.every(([user, hash], i) => b[i]![0] === user && b[i]![1] === hash);
}

export class ReplicaCertificates implements CertificateView {
  private readonly hosts = new Map<string, HostCertificate>();
  private issuing = new Set<string>();
  private challenges = new Map<string, string>();
  private alpnChallenges = new Map<string, { cert: string; key: string }>();
  private readonly waiters = new Set<() => void>();
  private nextAsk = 0;
  private readonly asks = new Map<number, (allowed: boolean) => void>();

  /** Other hosts' HTTP-01 answers, when the ACME cache is shared by a fleet (fleet.ts). */
  private readonly shared: SharedChallenges | undefined;

  constructor(
    acmeCachePath?: string,
    /** Sends an on-demand ask to the control plane (set by the worker). */
    private readonly sendAsk: (request: number, host: string, service: string) => void = () => {},
  ) {
    this.shared = acmeCachePath ? new SharedChallenges(acmeCachePath) : undefined;
  }

  /** Takes a change; true if the certificates changed (the listener must reload). */
  apply(state: TlsState): boolean {
    if (state.reset) this.hosts.clear();
    for (const host of state.removed) this.hosts.delete(host);
    for (const certificate of state.certificates) this.hosts.set(certificate.host, certificate);
    this.issuing = new Set(state.issuing);
    this.challenges = new Map(state.challenges);
    this.alpnChallenges = new Map(state.alpnChallenges.map(({ host, cert, key }) => [host, { cert, key }]));
    for (const wake of [...this.waiters]) wake();
    return state.reset || state.removed.length > 0 || state.certificates.length > 0;
  }

  entries(): HostCertificate[] {
    return [...this.hosts.values()];
  }

  /** Whether a TLS name has a certificate: its own or its wildcard's. */
  has(name: string): boolean {
    return certificateHostsFor(name).some((host) => this.hosts.has(host));
  }

  private issuingFor(name: string): boolean {
    return certificateHostsFor(name).some((host) => this.issuing.has(host));
  }

  /** The control plane decides (it asks the URL and orders); its answer comes after the state that shows the order. */
  requestOnDemand(host: string, service: string): Promise<boolean> {
    const request = ++this.nextAsk;
    return new Promise((resolve) => {
      this.asks.set(request, resolve);
      this.sendAsk(request, host, service);
    });
  }

  answered(request: number, allowed: boolean) {
    const resolve = this.asks.get(request);
    this.asks.delete(request);
    resolve?.(allowed);
  }

  challenge(token: string): string | undefined {
    return this.challenges.get(token) ?? this.shared?.read(token);
  }

  alpnChallenge(host: string) {
    return this.alpnChallenges.get(host);
  }

  waitFor(host: string, timeoutMs: number): Promise<boolean> {
    if (this.has(host)) return Promise.resolve(true);
    if (!this.issuingFor(host)) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (issued: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(issued);
      };
      const check = () => {
        if (this.has(host)) done(true);
        else if (!this.issuingFor(host)) done(false);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.waiters.add(check);
    });
  }
}
