import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { GroupView, RolloutStatus } from '@fleetpatch/shared';
import { type AgentProcess, type ApiClient, waitFor } from '../../scripts/lib/local-fleet.mjs';
import { FleetHarness, type FleetOptions, readFileOrNull } from './fleet-harness.js';
import { HostNamespace } from './host-namespaces.js';
import { LatencyRelay } from './latency-relay.js';
import { applyLinkFault, clearLinkFault, type LinkFault, linkFaultCounts } from './link-faults.js';
import type { CoordinatorGroupShape, StoreConfig } from './store-variants.js';

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
  /**
   * Several coordinators on the PostgreSQL `store` (a group, named `c1`…`cN`): every agent lists
   * them all, host i starting at coordinator i mod N. One coordinator unless given.
   */
  group?: CoordinatorGroupShape;
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
 * real agent that reaches one real coordinator (SQLite store unless `store` says; several on one
 * PostgreSQL database with `group`) over its own veth link; and the faults a scenario injects into
 * them. `teardown` stops every process and removes every namespace and link, whatever state the
 * scenario left them in.
 */
export class FaultFleet {
  private readonly agents = new Map<string, AgentProcess>();
  private readonly joinTokens = new Map<string, string>();
  private readonly prepared = new Map<string, PreparedHost>();

  private constructor(
    readonly work: string,
    /** Every coordinator: one, or the group's members in order (`c1` first). */
    readonly members: readonly FleetHarness[],
    readonly hostIds: readonly string[],
    private readonly namespaces: ReadonlyMap<string, HostNamespace>,
    private readonly options: FaultFleetOptions,
    private readonly relay: LatencyRelay | undefined,
  ) {}

  static async start(options: FaultFleetOptions): Promise<FaultFleet> {
    const startedAt = Date.now();
    const work = await mkdtemp(join(tmpdir(), `fleetpatch-fault-${options.name}-`));
    // The coordinators boot (a second or more of CPU each) while the namespaces are made.
    const starting = startCoordinators(work, options);
    const members: FleetHarness[] = [];
    let created: HostNamespace[];
    try {
      created = HostNamespace.createMany(options.hosts);
    } catch (err) {
      for (const member of await starting.catch(() => [])) await member.stop();
      await rm(work, { recursive: true, force: true });
      throw err;
    }
    for (const ns of created) live.add(ns);
    let relay: LatencyRelay | undefined;
    try {
      members.push(...(await starting));
      const fleet = members[0] as FleetHarness;
      if (options.relayDelayMs) relay = await LatencyRelay.start(fleet.coordinator.port, options.relayDelayMs);
      const ids = created.map((_, i) => `${options.name}-${i + 1}`);
      const namespaces = new Map(ids.map((id, i) => [id, created[i] as HostNamespace]));
      const faultFleet = new FaultFleet(work, members, ids, namespaces, options, relay);
      // Every host at once: its file root, its join token, its agent. Twenty one after the other
      // took seconds of round trips before the first agent was even spawned.
      await Promise.all(
        ids.map(async (id) => {
          const prepared = (await options.prepareHost?.(id)) ?? {};
          faultFleet.prepared.set(id, prepared);
          if (prepared.rootDir === undefined) {
            const file = faultFleet.fileOnHost(id);
            await mkdir(dirname(file), { recursive: true });
            await writeFile(file, options.initial, { mode: 0o644 });
          }
          faultFleet.joinTokens.set(id, await fleet.register(id, { fleet: options.name }));
          faultFleet.startAgent(id);
        }),
      );
      const spawnedAt = Date.now();
      // Twenty agents starting at once on two busy cores (~0.7 s of CPU each to load) take a while.
      await fleet.waitOnline(ids, 90_000);
      const onlineMs = Date.now() - spawnedAt;
      console.log(
        `fault fleet ${options.name}: ${ids.length} hosts up in ${Date.now() - startedAt} ms (${onlineMs} ms of it for the agents to come online)`,
      );
      return faultFleet;
    } catch (err) {
      await relay?.close();
      await Promise.allSettled(members.map((member) => member.stop()));
      for (const ns of created) {
        ns.destroy();
        live.delete(ns);
      }
      await rm(work, { recursive: true, force: true });
      throw err;
    }
  }

  /** The first coordinator (`c1` of a group): the one the scenarios ask, and whose harness tracks the agents. */
  get fleet(): FleetHarness {
    return this.members[0] as FleetHarness;
  }

  /** The coordinator's API, as its admin (what `checkRollout` asks). */
  get api(): ApiClient {
    return this.fleet.api;
  }

  /** The rollout as every coordinator sees it (one view, or one per group member): they must agree. */
  statusEverywhere(rolloutId: string): Promise<RolloutStatus[]> {
    return Promise.all(this.members.map((member) => member.status(rolloutId)));
  }

  /** The group member holding `rolloutId`'s lease (`c1`…), as `askMember` sees it; undefined when none does. */
  async driverOf(rolloutId: string, askMember = 0): Promise<string | undefined> {
    const group = await this.members[askMember]?.api.get<GroupView>('/v1/group');
    return group?.leases.find((lease) => lease.rolloutId === rolloutId)?.holder;
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
    // Every coordinator, starting at this host's own (host i at i mod N): a group spreads its agents.
    const ports = this.relay ? [this.relay.port] : this.members.map((member) => member.coordinator.port);
    const first = this.hostIds.indexOf(id) % ports.length;
    const [coordinatorUrl = '', ...moreCoordinatorUrls] = ports.map(
      (_, k) => `http://${ns.gatewayIp}:${ports[(first + k) % ports.length]}`,
    );
    const agent = this.fleet.spawnAgent({
      id,
      coordinatorUrl,
      ...(moreCoordinatorUrls.length > 0 ? { moreCoordinatorUrls } : {}),
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

  /**
   * SIGKILL of the coordinator, then a new process on the same data dir and port. In a group, the
   * member killed is the one driving `rolloutId` (holding its lease; `c1` when none does), and it
   * stays down until another member has taken the rollout over (or it has ended), so the takeover is
   * real. Returns the member killed (`c1`…), whether it was driving, and in a group how long the
   * takeover took.
   */
  async crashCoordinator(rolloutId?: string): Promise<{ killed: string; drove: boolean; takeoverMs?: number }> {
    if (this.members.length === 1 || rolloutId === undefined) {
      await this.fleet.restart({ crash: true });
      return { killed: 'c1', drove: true };
    }
    const driver = await this.driverOf(rolloutId);
    const index = driver === undefined ? 0 : memberIndex(driver);
    const member = this.members[index] as FleetHarness;
    const ask = (index + 1) % this.members.length;
    const killedAt = Date.now();
    await member.coordinator.kill();
    await waitFor(
      `another coordinator than c${index + 1} drives rollout ${rolloutId}, or it ended`,
      async () => {
        const holder = await this.driverOf(rolloutId, ask);
        return holder !== `c${index + 1}` || undefined;
      },
      { timeoutMs: 30_000, intervalMs: 20 },
    );
    const takeoverMs = Date.now() - killedAt;
    // Already dead: `restart` only starts it again, on its data dir and port.
    await member.restart();
    return { killed: `c${index + 1}`, drove: driver !== undefined, takeoverMs };
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
      () => Promise.all(this.members.map((member) => member.coordinator.stop())),
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

/** `c3` → 2: the group's members are named after their place (`startCoordinators`). */
function memberIndex(coordinatorId: string): number {
  if (!/^c[1-9][0-9]*$/.test(coordinatorId)) throw new Error(`not a member of this fleet: ${coordinatorId}`);
  return Number(coordinatorId.slice(1)) - 1;
}

/**
 * The fleet's coordinator, or its group's members, started together (as a group starts: the first
 * to take the migration lock migrates, the others wait for it). Every one listens on every address:
 * each namespaced host reaches it through its own gateway.
 */
async function startCoordinators(work: string, options: FaultFleetOptions): Promise<FleetHarness[]> {
  const base = { host: '0.0.0.0', heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1000 };
  const { group, store } = options;
  if (group === undefined) {
    const fleet = await FleetHarness.start(options.coordinatorDir ?? join(work, 'coordinator'), {
      tickIntervalMs: 100,
      extraConfig: { ...base, ...store },
      ...options.harness,
    });
    return [fleet];
  }
  if (store?.store === undefined) throw new Error('a coordinator group needs a PostgreSQL store');
  const { url } = store.store;
  const started = await Promise.allSettled(
    Array.from({ length: group.coordinators }, (_, i) =>
      FleetHarness.start(join(options.coordinatorDir ?? work, `coordinator-c${i + 1}`), {
        tickIntervalMs: 100,
        extraConfig: {
          ...base,
          store: { kind: 'postgres', url, coordinatorId: `c${i + 1}`, leaseMs: group.leaseMs },
        },
        ...options.harness,
      }),
    ),
  );
  const members = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.allSettled(members.map((member) => member.stop()));
    throw failed.reason;
  }
  return members;
}
