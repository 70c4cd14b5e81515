import type { Facts, HostRunState, Patch, RolloutRequest, RolloutState } from '@fleetpatch/shared';

// The coordinator's read views (rollout-view.ts, the routes) are TypeScript interfaces there, not
// zod schemas in shared, so the CLI states here only the fields it reads. If those views move to
// shared, these become imports.

export interface AgentView {
  id: string;
  labels: Record<string, string>;
  facts: Facts | null;
  agentVersion: string | null;
  lastSeenAt: string | null;
  createdAt: string;
  online: boolean;
}

export interface RolloutRecordView {
  id: string;
  patchId: string;
  request: RolloutRequest;
  state: RolloutState;
  createdBy: string;
  hostCount: number;
  waveCount: number;
  currentWave: number;
  stateReason: string | null;
  createdAt: string;
  updatedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export type WavePhase = 'pending' | 'running' | 'baking' | 'passed' | 'stopped';

export interface HostView {
  hostId: string;
  state: HostRunState;
  online: boolean;
  changed: boolean;
  orderId: string | null;
  errorCode: string | null;
  reason: string | null;
}

export interface RolloutStatusView {
  rollout: RolloutRecordView & { bakeUntil: string | null };
  approvals: { approver: string; at: string }[];
  failures: number;
  toleratedFailures: number;
  haltsOn: string;
  counts: Partial<Record<HostRunState, number>>;
  waves: { wave: number; phase: WavePhase; hosts: HostView[] }[];
}

export interface RolloutPlanView {
  rolloutId: string;
  frozen: boolean;
  hostCount: number;
  waveSizes: number[];
  waves: { wave: number; hosts: string[] }[];
  toleratedFailures: number;
  haltsOn: string;
}

export interface PreflightView {
  rolloutId: string;
  summary: Record<string, number>;
  results: { hostId: string; outcome: string; reason: string | null; errorCode: string | null }[];
}

export interface EventView {
  seq: number;
  rolloutId: string | null;
  hostId: string | null;
  actor: string;
  type: string;
  fromState: string | null;
  toState: string | null;
  data: Record<string, unknown> | null;
  at: string;
}

export interface EventPage {
  events: EventView[];
  next: number | null;
}

export type PatchView = Patch;

/** Rollout states after which nothing more happens unless a human acts. */
export const FINAL_ROLLOUT_STATES: ReadonlySet<RolloutState> = new Set([
  'succeeded',
  'halted',
  'aborted',
  'reverted',
  'revert_failed',
]);

/** Final states that mean the operator got what they asked for. */
export const SUCCESSFUL_ROLLOUT_STATES: ReadonlySet<RolloutState> = new Set(['succeeded', 'reverted']);
