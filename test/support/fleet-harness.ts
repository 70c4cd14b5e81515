/**
 * A real coordinator plus agent processes for end-to-end tests, with every process tracked so a
 * test's afterAll/afterEach can stop them even when the test failed half-way.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readEntryFile } from '@fleetpatch/agent';
import type {
  ErrorBody,
  EventPage,
  HostView,
  NewPatchInput,
  Patch,
  PatchSpecInput,
  RolloutPlan,
  RolloutRequestInput,
  RolloutState,
  RolloutStatus,
} from '@fleetpatch/shared';
import {
  type AgentExit,
  type AgentProcess,
  type ApiClient,
  type ApiTokenConfig,
  apiClient,
  type CoordinatorProcess,
  issueJoinToken,
  startAgent,
  startCoordinator,
  waitFor,
  waitForAgentsOnline,
  waitForRolloutState,
} from '../../scripts/lib/local-fleet.mjs';

export const ADMIN_TOKEN = 'e2e-admin-token-000000001';

/** Where a rollout's apply and its revert come to rest: one definition, in shared. */
export { APPLY_END_STATES as FINAL_APPLY_STATES, REVERT_END_STATES as FINAL_REVERT_STATES } from '@fleetpatch/shared';

export interface FleetOptions {
  /** API tokens beside the admin's (`ADMIN_TOKEN`): `client(name)` calls the API as one of them. */
  tokens?: readonly ApiTokenConfig[];
  /** 50 ms unless said: rollouts move quickly. */
  tickIntervalMs?: number;
  /** Merged over the harness's own coordinator config (`minApprovals: 0`). */
  extraConfig?: Record<string, unknown>;
  /** A command the coordinator runs inside (e.g. `straceWrap`), for every start and restart. */
  wrap?: string[];
}

export interface AgentSpawn {
  id: string;
  /** The coordinator's URL as this agent reaches it (e.g. from a network namespace); its own by default. */
  coordinatorUrl?: string;
  /** Further coordinators of its group, tried in turn after `coordinatorUrl` (agents rotate on failure). */
  moreCoordinatorUrls?: readonly string[];
  /** A command the agent runs inside, e.g. a namespace's `exec` prefix. */
  wrap?: string[];
  /** Enrolls with it on first start (see `register`); a restart with the same dataDir needs none. */
  joinToken?: string;
  dataDir: string;
  rootDir: string;
  /** JSON agent config file (FLEETPATCH_AGENT_CONFIG), e.g. the apt section. */
  configFile?: string;
  env?: Record<string, string>;
  labels?: Record<string, string>;
}

/** Who creates, approves and starts a rollout (`startRollout`); the admin without an approval by default. */
export interface RolloutActors {
  by?: ApiClient;
  /** Approves it; the request then keeps its own `requiredApprovals`. */
  approvedBy?: ApiClient;
}

export class FleetHarness {
  /** The admin's client. Clients keep working across `restart`, which keeps the port. */
  readonly api: ApiClient;
  /** The log lines of each coordinator process this harness started, first to last. */
  readonly coordinatorRuns: string[][] = [];
  private readonly agents = new Set<AgentProcess>();
  /** The log lines of every agent this harness started, stopped ones included. */
  private readonly logsOfAll: string[][] = [];
  private current: CoordinatorProcess;

  private constructor(
    coordinator: CoordinatorProcess,
    private readonly config: Parameters<typeof startCoordinator>[0],
  ) {
    this.current = coordinator;
    this.coordinatorRuns.push(coordinator.logs);
    this.api = apiClient(coordinator.url, ADMIN_TOKEN);
  }

  static async start(dataDir: string, options: FleetOptions = {}): Promise<FleetHarness> {
    const config = {
      dataDir,
      apiTokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' } as const, ...(options.tokens ?? [])],
      tickIntervalMs: options.tickIntervalMs ?? 50,
      // Rollouts here may run without an approver (requiredApprovals 0); the coordinator must allow it.
      extraConfig: { minApprovals: 0, ...options.extraConfig },
      ...(options.wrap ? { wrap: options.wrap } : {}),
    };
    return new FleetHarness(await startCoordinator(config), config);
  }

  get coordinator(): CoordinatorProcess {
    return this.current;
  }

  /** A client calling the API as the token named `name` (see `FleetOptions.tokens`). */
  client(name: string): ApiClient {
    const entry = this.config.apiTokens.find((t) => t.name === name);
    if (!entry) throw new Error(`no API token named ${name}`);
    return apiClient(this.current.url, entry.token);
  }

  /**
   * Stops the coordinator — gracefully, or with SIGKILL when `crash` — and starts a new process on
   * the same data dir, port and config, with `env` added to its environment (e.g. a test crash point).
   * Agents stay up and reconnect by themselves. A coordinator already dead (killed by the test, or by
   * its own crash point) is simply started again.
   */
  async restart({ crash = false, env = {} }: { crash?: boolean; env?: Record<string, string> } = {}): Promise<void> {
    const previous = this.current;
    await (crash ? previous.kill() : previous.stop());
    this.current = await startCoordinator({ ...this.config, port: previous.port, env });
    this.coordinatorRuns.push(this.current.logs);
  }

  /** A single-use join token for host `id`, with `labels` fixed: pass it to `spawnAgent`. */
  register(id: string, labels: Record<string, string> = {}): Promise<string> {
    return issueJoinToken(this.api, id, labels);
  }

  /** Starts an agent process; it is stopped by `stopAgents`/`stop` whatever happens. */
  spawnAgent(spec: AgentSpawn): AgentProcess {
    const agent = startAgent({
      coordinatorUrl: spec.coordinatorUrl ?? this.coordinator.url,
      ...(spec.moreCoordinatorUrls ? { moreCoordinatorUrls: [...spec.moreCoordinatorUrls] } : {}),
      ...(spec.wrap ? { wrap: spec.wrap } : {}),
      hostId: spec.id,
      ...(spec.joinToken ? { joinToken: spec.joinToken } : {}),
      dataDir: spec.dataDir,
      rootDir: spec.rootDir,
      labels: spec.labels ?? {},
      ...(spec.configFile ? { configExtra: spec.configFile } : {}),
      env: { FLEETPATCH_LOG_LEVEL: 'info', ...spec.env },
    });
    this.agents.add(agent);
    this.logsOfAll.push(agent.logs);
    void agent.exited.then(() => this.agents.delete(agent));
    return agent;
  }

  /**
   * Registers each of `hosts` with the admin labels `labels` and starts its agent (which reports the
   * same labels) in the directories `dirsOf` gives it; resolves once every one is online.
   */
  async spawnRegistered(
    hosts: readonly string[],
    labels: Record<string, string>,
    dirsOf: (host: string) => { dataDir: string; rootDir: string },
  ): Promise<void> {
    for (const host of hosts) {
      const joinToken = await this.register(host, labels);
      this.spawnAgent({ id: host, joinToken, labels, ...dirsOf(host) });
    }
    await this.waitOnline(hosts);
  }

  agentLogs(): string[] {
    return this.logsOfAll.flat();
  }

  waitOnline(ids: readonly string[], timeoutMs = 20_000): Promise<true> {
    return waitForAgentsOnline(this.api, ids, timeoutMs);
  }

  /** Creates the patch (as the admin unless `by`); returns its id. */
  async createPatch(spec: NewPatchInput, by: ApiClient = this.api): Promise<string> {
    const patch = await by.post<Patch>('/v1/patches', spec);
    return patch.id;
  }

  /** Creates a rollout without starting it, needing no approval unless the request says so; returns its id. */
  async createRollout(request: RolloutRequestInput, by: ApiClient = this.api): Promise<string> {
    const created = await by.post<RolloutStatus>('/v1/rollouts', { requiredApprovals: 0, ...request });
    return created.rollout.id;
  }

  /**
   * Creates and starts a rollout; returns its id. Without `approvedBy` it needs no approval
   * (requiredApprovals 0 unless the request says otherwise); with it, that client approves it first.
   */
  async startRollout(request: RolloutRequestInput, { by = this.api, approvedBy }: RolloutActors = {}): Promise<string> {
    const id = approvedBy
      ? (await by.post<RolloutStatus>('/v1/rollouts', request)).rollout.id
      : await this.createRollout(request, by);
    if (approvedBy) await approvedBy.post(`/v1/rollouts/${id}/approve`);
    await by.post(`/v1/rollouts/${id}/start`);
    return id;
  }

  plan(rolloutId: string): Promise<RolloutPlan> {
    return this.api.get<RolloutPlan>(`/v1/rollouts/${rolloutId}/plan`);
  }

  status(rolloutId: string): Promise<RolloutStatus> {
    return this.api.get<RolloutStatus>(`/v1/rollouts/${rolloutId}`);
  }

  waitForState(rolloutId: string, states: readonly RolloutState[], timeoutMs = 30_000): Promise<RolloutStatus> {
    return waitForRolloutState(this.api, rolloutId, states, timeoutMs);
  }

  /** Stops one agent this harness started (the others go on: for cases that run side by side). */
  async stopAgent(agent: AgentProcess): Promise<void> {
    await agent.stop();
    this.agents.delete(agent);
  }

  async stopAgents(): Promise<void> {
    await Promise.all([...this.agents].map((agent) => agent.stop()));
    this.agents.clear();
  }

  async stop(): Promise<void> {
    await this.stopAgents();
    await this.coordinator.stop();
  }
}

/**
 * A file patch setting `path` to `content`, owned by the user running the test (agents here are not
 * root); `overrides` replaces any top-level field.
 */
export function sampleFilePatch(
  path: string,
  content: string,
  overrides: Partial<PatchSpecInput> = {},
): PatchSpecInput {
  return {
    title: `Set ${path}`,
    problem: 'An end-to-end test needs a change to roll out.',
    rootCause: 'None: this is a test.',
    intendedFix: `The new content of ${path}.`,
    ticket: 'E2E',
    change: {
      kind: 'file',
      path,
      content,
      mode: '0644',
      owner: String(process.getuid?.() ?? 0),
      group: String(process.getgid?.() ?? 0),
    },
    ...overrides,
  };
}

/** The content of `file`; null when it is absent (a host that never got it, or lost it). */
export async function readFileOrNull(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Every host of a rollout, flattened across waves. */
export function hostsOf(status: RolloutStatus): HostView[] {
  return status.waves.flatMap((wave) => wave.hosts);
}

export function hostOf(status: RolloutStatus, hostId: string): HostView {
  const host = hostsOf(status).find((h) => h.hostId === hostId);
  if (!host) throw new Error(`host ${hostId} is not in rollout ${status.rollout.id}`);
  return host;
}

/** The error body of a refused `api.raw(…)` call: `{ error: { code, message, details? } }`. */
export async function errorBody(res: Response): Promise<ErrorBody> {
  return (await res.json()) as ErrorBody;
}

/** The field paths a 400 names (`details.issues[].path`, e.g. `body.change.mode`). */
export function issuePaths(body: ErrorBody): string[] {
  const issues = body.error.details?.issues;
  if (!Array.isArray(issues)) return [];
  return issues.map((issue: { path: string }) => issue.path);
}

/** Resolves with the agent's exit, or rejects after `timeoutMs` (the process is then left to cleanup). */
export async function exitWithin(agent: AgentProcess, timeoutMs: number, what: string): Promise<AgentExit> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`agent did not exit within ${timeoutMs} ms (${what}):\n${agent.logs.join('\n')}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([agent.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The pino lines of a process log that parse as JSON objects. */
export function jsonLines(logs: readonly string[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of logs) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line or stderr chunk: not a log record
    }
  }
  return out;
}

/** What an agent's on-disk journal holds: `<dataDir>/orders/<orderId>/entry.json`. */
export interface JournalFileEntry {
  orderId: string;
  kind: 'apply' | 'revert';
  phase: string;
  changed: boolean;
  /** The coordinator acknowledged its result. */
  acked: boolean;
  /** How many times the agent started this order id: 1, or at most once was broken. */
  executions: number;
  snapshot?: unknown;
  revertsOrderId?: string | undefined;
  order?: { rolloutId: string } | undefined;
  result?: { outcome: string; changed: boolean } | undefined;
}

/**
 * Every entry of the journal under `dataDir`. The agent makes `orders/` when it starts, so a missing
 * one is an error, not an empty journal: a wrong path must not pass for "no order here".
 */
export async function readJournal(dataDir: string): Promise<JournalFileEntry[]> {
  const ordersDir = join(dataDir, 'orders');
  const names = await readdir(ordersDir);
  const entries: JournalFileEntry[] = [];
  for (const name of names) {
    const raw = await readFile(join(ordersDir, name, 'entry.json'), 'utf8');
    // Read as the agent reads it, by its schema: an entry the agent could not read back fails the test here.
    entries.push(readEntryFile(raw));
  }
  return entries;
}

/**
 * The agent's journal once every order in it is done and its result acknowledged by the coordinator:
 * nothing is left to report. Waits (with a deadline) because the last ack may follow the rollout's end.
 * An empty journal is waited on too (the order may not be journaled yet), unless `emptyIsSettled`:
 * for a check that no order is in flight on a host that may never have had one.
 */
export async function settledJournal(
  dataDir: string,
  { timeoutMs = 10_000, emptyIsSettled = false }: { timeoutMs?: number; emptyIsSettled?: boolean } = {},
): Promise<JournalFileEntry[]> {
  let last: JournalFileEntry[] = [];
  try {
    return await waitFor(
      'every journal entry done and acknowledged',
      async () => {
        last = await readJournal(dataDir);
        const some = last.length > 0 || emptyIsSettled;
        return some && last.every((e) => e.phase === 'done' && e.acked) ? last : undefined;
      },
      { timeoutMs },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}
${JSON.stringify(last, null, 2)}`);
  }
}

/**
 * What the coordinator recorded from `hostId`'s reports in a rollout, progress aside: one event per
 * result it took in (`host.healthy`, `host.reverted`, `host.late_result`…), oldest first.
 */
export async function recordedResults(api: ApiClient, rolloutId: string, hostId: string): Promise<string[]> {
  const { events } = await api.get<EventPage>(`/v1/rollouts/${rolloutId}/events?limit=1000`);
  // Progress and live health are observations on the way, not results: neither is counted.
  return events
    .filter((e) => e.hostId === hostId && e.actor === hostId && e.type !== 'host.progress' && e.type !== 'host.health')
    .map((e) => e.type);
}

/**
 * Every path under `dir` (recursively) whose name matches `pattern`. `dir` itself must exist (a
 * wrong path must not pass for "nothing left behind"); a directory below it that vanishes while it
 * is walked is skipped.
 */
export async function findNames(dir: string, pattern: RegExp): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch (err) {
      if (current !== dir && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const entry of entries) {
      const path = join(current, entry.name);
      if (pattern.test(entry.name)) found.push(path);
      if (entry.isDirectory()) await walk(path);
    }
  };
  await walk(dir);
  return found;
}
