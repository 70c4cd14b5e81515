// Types for local-fleet.mjs, so TypeScript tests can import it without casts.
import type { ChildProcess } from 'node:child_process';
import type { HostRunState, RolloutState } from '@fleetpatch/shared';

export declare const COORDINATOR_BIN: string;
export declare const AGENT_BIN: string;

/** Polls `probe` until it returns a truthy value or the deadline passes (then throws with `what`). */
export declare function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  options?: { timeoutMs?: number; intervalMs?: number },
): Promise<NonNullable<T>>;

export interface ApiTokenConfig {
  name: string;
  token: string;
  role: 'viewer' | 'operator' | 'approver' | 'admin';
}

export interface CoordinatorProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** stdout lines (pino JSON) and stderr chunks, newest last, capped. */
  logs: string[];
  /** Graceful SIGTERM. */
  stop(): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
}

export declare function startCoordinator(options: {
  dataDir: string;
  apiTokens: ApiTokenConfig[];
  port?: number;
  tickIntervalMs?: number;
  heartbeatIntervalMs?: number;
  extraConfig?: Record<string, unknown>;
  env?: Record<string, string>;
}): Promise<CoordinatorProcess>;

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AgentProcess {
  child: ChildProcess;
  logs: string[];
  /** Resolves once the process has exited, however it ended. */
  exited: Promise<AgentExit>;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export declare function issueJoinToken(
  api: ApiClient,
  hostId: string,
  labels?: Record<string, string>,
): Promise<string>;

export declare function startAgent(options: {
  coordinatorUrl: string;
  hostId: string;
  /** Used on the first start only, to enroll; passed in the environment. */
  joinToken?: string;
  /** Pass --allow-insecure; defaults to true for an http:// or ws:// coordinatorUrl. */
  allowInsecure?: boolean;
  dataDir: string;
  rootDir: string;
  labels?: Record<string, string>;
  allowRoots?: string[];
  /** Path of a JSON agent config file, passed as FLEETPATCH_AGENT_CONFIG. */
  configExtra?: string;
  env?: Record<string, string>;
  /** A command the agent runs inside, e.g. ['ip', 'netns', 'exec', 'host-1']. */
  wrap?: string[];
}): AgentProcess;

/** Thrown by ApiClient calls on a non-2xx answer. */
export interface ApiError extends Error {
  status: number;
  body: unknown;
}

export interface ApiClient {
  get<T = unknown>(path: string): Promise<T>;
  post<T = unknown>(path: string, body?: unknown): Promise<T>;
  raw(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Response>;
}

/** `ca`: PEM CA certificate(s) to trust for an https:// coordinator. */
export declare function apiClient(baseUrl: string, token: string, options?: { ca?: string }): ApiClient;

/** One host of a rollout as GET /v1/rollouts/:id shows it. */
export interface HostRunView {
  hostId: string;
  state: HostRunState;
  online: boolean;
  changed: boolean;
  orderId: string | null;
  errorCode: string | null;
  reason: string | null;
  health: unknown;
}

/** The parts of GET /v1/rollouts/:id that scripts and tests read. */
export interface RolloutStatusView {
  rollout: {
    id: string;
    patchId: string;
    state: RolloutState;
    stateReason: string | null;
    currentWave: number;
    hostCount: number;
    waveCount: number;
    [key: string]: unknown;
  };
  failures: number;
  toleratedFailures: number;
  haltsOn: string;
  counts: Partial<Record<HostRunState, number>>;
  waves: { wave: number; phase: 'pending' | 'running' | 'baking' | 'passed'; hosts: HostRunView[] }[];
}

/** Waits until the rollout's state is one of `states`; returns its status. */
export declare function waitForRolloutState(
  api: Pick<ApiClient, 'get'>,
  rolloutId: string,
  states: readonly RolloutState[],
  timeoutMs?: number,
): Promise<RolloutStatusView>;

export declare function waitForAgentsOnline(api: ApiClient, ids: readonly string[], timeoutMs?: number): Promise<true>;
