/**
 * A real coordinator plus agent processes for end-to-end tests, with every process tracked so a
 * test's afterAll/afterEach can stop them even when the test failed half-way.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PatchSpecInput, RolloutRequestInput, RolloutState } from '@fleetpatch/shared';
import {
  type AgentExit,
  type AgentProcess,
  type ApiClient,
  apiClient,
  type CoordinatorProcess,
  type HostRunView,
  issueJoinToken,
  type RolloutStatusView,
  startAgent,
  startCoordinator,
  waitForAgentsOnline,
  waitForRolloutState,
} from '../../scripts/lib/local-fleet.mjs';

export const ADMIN_TOKEN = 'e2e-admin-token-000000001';

export const FINAL_APPLY_STATES: readonly RolloutState[] = ['succeeded', 'halted', 'aborted'];
export const FINAL_REVERT_STATES: readonly RolloutState[] = ['reverted', 'revert_failed'];

export interface AgentSpawn {
  id: string;
  /** Enrolls with it on first start (see `register`); a restart with the same dataDir needs none. */
  joinToken?: string;
  dataDir: string;
  rootDir: string;
  /** JSON agent config file (FLEETPATCH_AGENT_CONFIG), e.g. the apt section. */
  configFile?: string;
  env?: Record<string, string>;
  labels?: Record<string, string>;
}

export class FleetHarness {
  readonly api: ApiClient;
  private readonly agents = new Set<AgentProcess>();
  /** The log lines of every agent this harness started, stopped ones included. */
  private readonly logsOfAll: string[][] = [];

  private constructor(readonly coordinator: CoordinatorProcess) {
    this.api = apiClient(coordinator.url, ADMIN_TOKEN);
  }

  static async start(dataDir: string): Promise<FleetHarness> {
    const coordinator = await startCoordinator({
      dataDir,
      apiTokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' }],
      tickIntervalMs: 50,
      // Rollouts here run without an approver (requiredApprovals 0); the coordinator must allow it.
      extraConfig: { minApprovals: 0 },
    });
    return new FleetHarness(coordinator);
  }

  /** A single-use join token for host `id`, with `labels` fixed: pass it to `spawnAgent`. */
  register(id: string, labels: Record<string, string> = {}): Promise<string> {
    return issueJoinToken(this.api, id, labels);
  }

  /** Starts an agent process; it is stopped by `stopAgents`/`stop` whatever happens. */
  spawnAgent(spec: AgentSpawn): AgentProcess {
    const agent = startAgent({
      coordinatorUrl: this.coordinator.url,
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

  agentLogs(): string[] {
    return this.logsOfAll.flat();
  }

  waitOnline(ids: readonly string[]): Promise<true> {
    return waitForAgentsOnline(this.api, ids, 20_000);
  }

  async createPatch(spec: PatchSpecInput): Promise<string> {
    const patch = await this.api.post<{ id: string }>('/v1/patches', spec);
    return patch.id;
  }

  /** Creates (no approvals needed) and starts a rollout; returns its id. */
  async startRollout(request: RolloutRequestInput): Promise<string> {
    const created = await this.api.post<RolloutStatusView>('/v1/rollouts', { requiredApprovals: 0, ...request });
    await this.api.post(`/v1/rollouts/${created.rollout.id}/start`);
    return created.rollout.id;
  }

  status(rolloutId: string): Promise<RolloutStatusView> {
    return this.api.get<RolloutStatusView>(`/v1/rollouts/${rolloutId}`);
  }

  waitForState(rolloutId: string, states: readonly RolloutState[], timeoutMs = 30_000): Promise<RolloutStatusView> {
    return waitForRolloutState(this.api, rolloutId, states, timeoutMs);
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

/** Every host of a rollout, flattened across waves. */
export function hostsOf(status: RolloutStatusView): HostRunView[] {
  return status.waves.flatMap((wave) => wave.hosts);
}

export function hostOf(status: RolloutStatusView, hostId: string): HostRunView {
  const host = hostsOf(status).find((h) => h.hostId === hostId);
  if (!host) throw new Error(`host ${hostId} is not in rollout ${status.rollout.id}`);
  return host;
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
  revertsOrderId?: string;
  order?: { rolloutId: string };
  result?: { outcome: string; changed: boolean };
}

export async function readJournal(dataDir: string): Promise<JournalFileEntry[]> {
  const ordersDir = join(dataDir, 'orders');
  let names: string[];
  try {
    names = await readdir(ordersDir);
  } catch {
    return [];
  }
  const entries: JournalFileEntry[] = [];
  for (const name of names) {
    const raw = await readFile(join(ordersDir, name, 'entry.json'), 'utf8');
    entries.push(JSON.parse(raw) as JournalFileEntry);
  }
  return entries;
}

/** Every path under `dir` (recursively) whose name matches `pattern`. */
export async function findNames(dir: string, pattern: RegExp): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch {
      return;
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
