import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { AgentProcess, ApiClient } from '../../scripts/lib/local-fleet.mjs';
import { FleetHarness, type FleetOptions, readFileOrNull } from './fleet-harness.js';
import { HostNamespace } from './host-namespaces.js';
import { LatencyRelay } from './latency-relay.js';
import { applyLinkFault, clearLinkFault, type LinkFault, linkFaultCounts } from './link-faults.js';
import type { StoreConfig } from './store-variants.js';

/** Namespaces of every fault fleet of this process still up: removed at exit if a teardown never ran. */
const live = new Set<HostNamespace>();
process.once('exit', () => {
  for (const ns of live) ns.destroy();
});

export interface FaultFleetOptions {
  /** Names the work directory and the hosts (`<name>-1`…). */
  name: string;
  hosts: number;
  /** The file every host starts with, at `path` in its file root. */
  path: string;
  initial: string;
  /** The coordinator's WebSocket ping interval: a cut link is noticed within about two of them. */
  heartbeatIntervalMs?: number;
  /** Latency added by a TCP relay in front of the coordinator (for kernels without sch_netem). */
  relayDelayMs?: number;
  /** Extra environment of every agent (e.g. its reconnect cap), or of host `id`'s agent. */
  agentEnv?: Record<string, string> | ((id: string) => Record<string, string>);
  /** Options of the coordinator's harness: more API tokens, a command it runs inside (e.g. `env` setting its clock). */
  harness?: Pick<FleetOptions, 'tokens' | 'wrap'>;
  /**
   * Prepares host `id`'s file root, data dir or agent config instead of the defaults: e.g. a
   * throwaway dpkg root for package changes, a small file system, the agent's signing policy.
   */
  prepareHost?: (id: string) => Promise<PreparedHost>;
  /** The coordinator's data dir (e.g. on a small file system the test mounted); in the work dir by default. */
  coordinatorDir?: string;
  /** The coordinator's store: SQLite in its data dir unless this names a PostgreSQL one (store-variants.ts). */
  store?: StoreConfig;
}

/**
 * Where a host's agent finds its file root, its data dir and an extra agent config file; a root not
 * given is the default one, holding `path` with `initial`.
 */
export interface PreparedHost {
  rootDir?: string;
  dataDir?: string;
  configFile?: string;
}

/**
 * N hosts, each a network namespace with its own address, data dir and file root, each running one
 * real agent that reaches one real coordinator (SQLite store unless `store` says) over its own veth link; and the faults
 * a scenario injects into them. `teardown` stops every process and removes every namespace and link,
 * whatever state the scenario left them in.
 */
export class FaultFleet {
  private readonly agents = new Map<string, AgentProcess>();
  private readonly joinTokens = new Map<string, string>();
  private readonly prepared = new Map<string, PreparedHost>();

  private constructor(
    readonly work: string,
    readonly fleet: FleetHarness,
    readonly hostIds: readonly string[],
    private readonly namespaces: ReadonlyMap<string, HostNamespace>,
    private readonly options: FaultFleetOptions,
    private readonly relay: LatencyRelay | undefined,
  ) {}

  static async start(options: FaultFleetOptions): Promise<FaultFleet> {
    const work = await mkdtemp(join(tmpdir(), `fleetpatch-fault-${options.name}-`));
    const created = HostNamespace.createMany(options.hosts);
    for (const ns of created) live.add(ns);
    let fleet: FleetHarness | undefined;
    let relay: LatencyRelay | undefined;
    try {
      fleet = await FleetHarness.start(options.coordinatorDir ?? join(work, 'coordinator'), {
        tickIntervalMs: 100,
        // Every address: each namespaced host reaches it through its own gateway.
        extraConfig: { host: '0.0.0.0', heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1000, ...options.store },
        ...options.harness,
      });
      if (options.relayDelayMs) relay = await LatencyRelay.start(fleet.coordinator.port, options.relayDelayMs);
      const ids = created.map((_, i) => `${options.name}-${i + 1}`);
      const namespaces = new Map(ids.map((id, i) => [id, created[i] as HostNamespace]));
      const faultFleet = new FaultFleet(work, fleet, ids, namespaces, options, relay);
      for (const id of ids) {
        const prepared = (await options.prepareHost?.(id)) ?? {};
        faultFleet.prepared.set(id, prepared);
        if (prepared.rootDir === undefined) {
          const file = faultFleet.fileOnHost(id);
          await mkdir(dirname(file), { recursive: true });
          await writeFile(file, options.initial, { mode: 0o644 });
        }
        faultFleet.joinTokens.set(id, await fleet.register(id, { fleet: options.name }));
        faultFleet.startAgent(id);
      }
      await fleet.waitOnline(ids, 60_000);
      return faultFleet;
    } catch (err) {
      await relay?.close();
      await fleet?.stop();
      for (const ns of created) {
        ns.destroy();
        live.delete(ns);
      }
      await rm(work, { recursive: true, force: true });
      throw err;
    }
  }

  /** The coordinator's API, as its admin (what `checkRollout` asks). */
  get api(): ApiClient {
    return this.fleet.api;
  }

  agentLogs(): string[] {
    return this.fleet.agentLogs();
  }

  waitOnline(ids: readonly string[], timeoutMs?: number): Promise<true> {
    return this.fleet.waitOnline(ids, timeoutMs);
  }

  rootOf(id: string): string {
    return this.prepared.get(id)?.rootDir ?? join(this.work, id, 'root');
  }

  dataOf(id: string): string {
    return this.prepared.get(id)?.dataDir ?? join(this.work, id, 'data');
  }

  /** Where host `id` keeps the scenario's file, as the test machine sees it. */
  fileOnHost(id: string): string {
    return join(this.rootOf(id), this.options.path);
  }

  readFileOf(id: string): Promise<string> {
    return readFile(this.fileOnHost(id), 'utf8');
  }

  /** The content of `path` (the fleet's file by default) on host `id`; null when it is absent. */
  async readFileAt(id: string, path = this.options.path): Promise<string | null> {
    return readFileOrNull(join(this.rootOf(id), path));
  }

  /** Whether host `id`'s agent process is running. */
  agentRunning(id: string): boolean {
    const child = this.agents.get(id)?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  namespaceOf(id: string): HostNamespace {
    const ns = this.namespaces.get(id);
    if (!ns) throw new Error(`no host ${id}`);
    return ns;
  }

  /** Starts host `id`'s agent: it enrolls with its join token the first time, then uses its credential. */
  startAgent(id: string): AgentProcess {
    const ns = this.namespaceOf(id);
    // The join token is single-use: the first start enrolls, every later one uses the credential.
    const joinToken = this.joinTokens.get(id);
    this.joinTokens.delete(id);
    const configFile = this.prepared.get(id)?.configFile;
    const env = this.options.agentEnv;
    const agent = this.fleet.spawnAgent({
      id,
      coordinatorUrl: `http://${ns.gatewayIp}:${this.relay?.port ?? this.fleet.coordinator.port}`,
      ...(joinToken ? { joinToken } : {}),
      dataDir: this.dataOf(id),
      rootDir: this.rootOf(id),
      labels: { fleet: this.options.name },
      wrap: ns.exec,
      ...(configFile ? { configFile } : {}),
      ...(env ? { env: typeof env === 'function' ? env(id) : env } : {}),
    });
    this.agents.set(id, agent);
    return agent;
  }

  agentOf(id: string): AgentProcess {
    const agent = this.agents.get(id);
    if (!agent) throw new Error(`no agent for ${id}`);
    return agent;
  }

  /** SIGKILL, all at once: no drain, no journal flush beyond what the agent already made durable. */
  async killAgents(ids: readonly string[]): Promise<void> {
    await Promise.all(ids.map((id) => this.agentOf(id).kill()));
  }

  /** SIGKILL of the coordinator, then a new process on the same data dir and port. */
  crashCoordinator(): Promise<void> {
    return this.fleet.restart({ crash: true });
  }

  partition(id: string): void {
    this.namespaceOf(id).partition();
  }

  heal(id: string): void {
    this.namespaceOf(id).heal();
  }

  /** Puts `fault` on host `id`'s link; returns what was applied. */
  degradeLink(id: string, fault: LinkFault): string[] {
    return applyLinkFault(this.namespaceOf(id), fault);
  }

  restoreLink(id: string): void {
    clearLinkFault(this.namespaceOf(id));
  }

  /** Puts `fault` on every host's link; returns what was applied (the kernel may lack some). */
  degradeEveryLink(fault: LinkFault): string[] {
    let applied: string[] = [];
    for (const ns of this.namespaces.values()) applied = applyLinkFault(ns, fault);
    if (this.relay) applied.unshift(`delay ${this.options.relayDelayMs} ms (relay)`);
    return applied;
  }

  /** Packets dropped and duplicated on every link so far, by the iptables rules (see `linkFaultCounts`). */
  faultCounts(): { dropped: number; duplicated: number } {
    const total = { dropped: 0, duplicated: 0 };
    for (const ns of this.namespaces.values()) {
      const counts = linkFaultCounts(ns);
      total.dropped += counts.dropped;
      total.duplicated += counts.duplicated;
    }
    return total;
  }

  restoreEveryLink(): void {
    for (const ns of this.namespaces.values()) clearLinkFault(ns);
  }

  /** The namespaces and links of this fleet still on the machine: empty after `teardown`. */
  leftovers(): string[] {
    const onMachine = [
      execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }),
      execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }),
    ].join('\n');
    return [...this.namespaces.values()]
      .flatMap((ns) => [ns.name, ns.linkOutside])
      .filter((name) => new RegExp(`\\b${name}\\b`).test(onMachine));
  }

  /** Stops everything and removes every namespace and link, each step whatever the one before did. */
  async teardown(): Promise<void> {
    const steps: Array<() => Promise<unknown> | unknown> = [
      () => this.fleet.stopAgents(),
      () => this.fleet.coordinator.stop(),
      () => this.relay?.close(),
      () => {
        for (const ns of this.namespaces.values()) {
          ns.destroy();
          live.delete(ns);
        }
      },
      () => rm(this.work, { recursive: true, force: true }),
    ];
    const errors: unknown[] = [];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'fault fleet teardown');
  }
}
