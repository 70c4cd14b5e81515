import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { GroupView, RolloutStatus } from '@fleetpatch/shared';
import {
  type AgentProcess,
  type ApiClient,
  apiClient,
  type CoordinatorProcess,
  issueJoinToken,
  startAgent,
  startCoordinator,
  waitFor,
  waitForAgentsOnline,
} from '../../scripts/lib/local-fleet.mjs';
import { ADMIN_TOKEN, readFileOrNull } from './fleet-harness.js';

export interface GroupFleetOptions {
  name: string;
  /** The PostgreSQL database every coordinator shares. */
  storeUrl: string;
  coordinators: number;
  hosts: number;
  /** The file every host starts with, at `path` in its file root. */
  path: string;
  initial: string;
  /** Rollout leases: short here, so a takeover is quick. */
  leaseMs: number;
}

/**
 * Several real coordinator processes sharing one PostgreSQL database (a coordinator group), and real
 * agents on 127.0.0.1 each knowing every coordinator: host i connects first to coordinator i mod N,
 * and moves to the next in its list when that one goes. Coordinators are named `c1`…`cN`.
 */
export class CoordinatorGroupFleet {
  readonly hostIds: string[];
  private readonly coordinators: (CoordinatorProcess | undefined)[] = [];
  private readonly ports: number[] = [];
  private readonly agents = new Map<string, AgentProcess>();
  private readonly logsOfAll: string[][] = [];

  private constructor(
    readonly work: string,
    private readonly options: GroupFleetOptions,
  ) {
    this.hostIds = Array.from({ length: options.hosts }, (_, i) => `${options.name}-${String(i + 1).padStart(2, '0')}`);
  }

  static async start(options: GroupFleetOptions): Promise<CoordinatorGroupFleet> {
    const fleet = new CoordinatorGroupFleet(
      await mkdtemp(join(tmpdir(), `fleetpatch-group-${options.name}-`)),
      options,
    );
    try {
      // Together, as a group starts: the first to take the migration lock migrates, the others wait for it.
      await Promise.all(Array.from({ length: options.coordinators }, (_, i) => fleet.startCoordinator(i)));
      await Promise.all(
        fleet.hostIds.map(async (id, index) => {
          const file = join(fleet.rootOf(id), options.path);
          await mkdir(dirname(file), { recursive: true });
          await writeFile(file, options.initial);
          await mkdir(fleet.dataOf(id), { recursive: true });
          const joinToken = await issueJoinToken(fleet.apiOf(index % options.coordinators), id);
          fleet.startAgent(id, joinToken);
        }),
      );
      await fleet.waitOnline(fleet.hostIds, 120_000);
      return fleet;
    } catch (err) {
      await fleet.teardown();
      throw err;
    }
  }

  /** Coordinator `i`'s API as the admin (`api` is the first live one). */
  apiOf(i: number): ApiClient {
    return apiClient(`http://127.0.0.1:${this.ports[i]}`, ADMIN_TOKEN);
  }

  get api(): ApiClient {
    const live = this.coordinators.findIndex((c) => c !== undefined);
    return this.apiOf(live === -1 ? 0 : live);
  }

  /** Indexes of the coordinators running now. */
  live(): number[] {
    return this.coordinators.flatMap((c, i) => (c ? [i] : []));
  }

  coordinatorId(i: number): string {
    return `c${i + 1}`;
  }

  /** Which coordinator drives the rollout now, by the group's leases (as coordinator `askI` sees them). */
  async driverOf(rolloutId: string, askI = this.live()[0] ?? 0): Promise<number | undefined> {
    const group = await this.apiOf(askI).get<GroupView>('/v1/group');
    const holder = group.leases.find((lease) => lease.rolloutId === rolloutId)?.holder;
    const index = holder === undefined ? -1 : Number(holder.slice(1)) - 1;
    return index >= 0 ? index : undefined;
  }

  async startCoordinator(i: number): Promise<void> {
    const coordinator = await startCoordinator({
      dataDir: join(this.work, this.coordinatorId(i)),
      apiTokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' }],
      tickIntervalMs: 100,
      heartbeatIntervalMs: 2000,
      ...(this.ports[i] === undefined ? {} : { port: this.ports[i] }),
      extraConfig: {
        minApprovals: 0,
        store: {
          kind: 'postgres',
          url: this.options.storeUrl,
          coordinatorId: this.coordinatorId(i),
          leaseMs: this.options.leaseMs,
        },
      },
    });
    this.coordinators[i] = coordinator;
    this.ports[i] = coordinator.port;
  }

  /** SIGKILLs coordinator `i`: its agents move to the next coordinator in their lists. */
  async killCoordinator(i: number): Promise<void> {
    await this.coordinators[i]?.kill();
    this.coordinators[i] = undefined;
  }

  /** The coordinator logs of every run so far (JSON lines). */
  coordinatorLogs(i: number): string[] {
    return this.coordinators[i]?.logs ?? [];
  }

  rootOf(id: string): string {
    return join(this.work, 'hosts', id, 'root');
  }

  dataOf(id: string): string {
    return join(this.work, 'hosts', id, 'data');
  }

  async readFileAt(id: string, path = this.options.path): Promise<string | null> {
    return readFileOrNull(join(this.rootOf(id), path));
  }

  agentLogs(): string[] {
    return this.logsOfAll.flat();
  }

  /** Online as every live coordinator sees it (the group's presence, not only its own sockets). */
  async waitOnline(ids: readonly string[], timeoutMs = 30_000): Promise<true> {
    for (const i of this.live()) await waitForAgentsOnline(this.apiOf(i), ids, timeoutMs);
    return true;
  }

  /** The status of a rollout from every live coordinator. */
  async statusEverywhere(rolloutId: string): Promise<RolloutStatus[]> {
    return Promise.all(this.live().map((i) => this.apiOf(i).get<RolloutStatus>(`/v1/rollouts/${rolloutId}`)));
  }

  async waitForState(rolloutId: string, states: readonly string[], timeoutMs = 60_000): Promise<RolloutStatus> {
    let last: RolloutStatus | undefined;
    await waitFor(
      `rollout ${rolloutId} in ${states.join('/')}`,
      async () => {
        last = await this.api.get<RolloutStatus>(`/v1/rollouts/${rolloutId}`);
        return states.includes(last.rollout.state);
      },
      { timeoutMs },
    );
    return last as RolloutStatus;
  }

  async teardown(): Promise<void> {
    await Promise.allSettled([...this.agents.values()].map((agent) => agent.stop()));
    await Promise.allSettled(this.coordinators.map((c) => c?.stop()));
    await rm(this.work, { recursive: true, force: true });
  }

  private startAgent(id: string, joinToken: string): void {
    const n = this.options.coordinators;
    const first = this.hostIds.indexOf(id) % n;
    const urls = Array.from({ length: n }, (_, k) => `http://127.0.0.1:${this.ports[(first + k) % n]}`);
    const [coordinatorUrl = '', ...more] = urls;
    const agent = startAgent({
      coordinatorUrl,
      moreCoordinatorUrls: more,
      hostId: id,
      joinToken,
      dataDir: this.dataOf(id),
      rootDir: this.rootOf(id),
      env: { FLEETPATCH_LOG_LEVEL: 'info', FLEETPATCH_RECONNECT_MAX_MS: '500' },
    });
    this.agents.set(id, agent);
    this.logsOfAll.push(agent.logs);
  }
}
