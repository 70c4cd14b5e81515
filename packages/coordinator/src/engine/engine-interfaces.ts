import type { Clock, CoordinatorMessage, MaintenanceWindow, RolloutState } from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import type { OwedCancels } from './owed-cancels.js';
import type { ReconnectGrace } from './reconnect-grace.js';

/** How the engine reaches agents. The hub implements it; the engine never sees a socket. */
export interface AgentChannel {
  /** Sends when the agent is connected and returns true; false otherwise (the order waits in the store). */
  send(agentId: string, message: CoordinatorMessage): boolean;
  isOnline(agentId: string): boolean;
  /** The protocol version agreed with the agent's live connection; undefined while it has none. */
  protocolVersionOf(agentId: string): number | undefined;
  /**
   * Brings `isOnline` up to date where it answers from a copy (a coordinator group's presence, read
   * on each heartbeat): asked before a host is judged offline for good (offline policy skip or fail).
   */
  refreshPresence?(): Promise<void>;
  /**
   * In a coordinator group: whether the agent is connected to another member, which has recorded its
   * hello (the group's rows say so a heartbeat later). Absent alone: no other member to ask.
   */
  isOnlineElsewhere?(agentId: string): boolean;
}

/**
 * The engine only reads the time: the shared `Clock`, of which a test's fake need only give `now`.
 * With `monotonicNow` too, the engine notices a step of the wall clock (see clock-step.ts).
 */
export type EngineClock = Pick<Clock, 'now'> & Partial<Pick<Clock, 'monotonicNow'>>;

/** Decides whether a new wave may start now; the maintenance-window calendar implements it. */
export type WaveGate = (window: MaintenanceWindow, now: number) => boolean;

/** Wakes the engine when a rollout's window opens or reaches its cutoff (node-cron in production). */
export interface WindowWatcher {
  watch(rolloutId: string, window: MaintenanceWindow): void;
  unwatch(rolloutId: string): void;
}

/**
 * What the engine's parts share, resolved once by `RolloutEngine`; each part takes the `Pick` it needs.
 * `markDirty` asks for a rollout to be advanced soon; `isStopped` is true once the engine is stopped.
 */
export interface EngineDeps {
  store: Store;
  channel: AgentChannel;
  log: Logger;
  clock: EngineClock;
  waveGate: WaveGate;
  windows: WindowWatcher | undefined;
  markDirty(rolloutId: string): void;
  isStopped(): boolean;
  /** Whether this coordinator drives the rollout (always, alone; by its lease in a group). */
  drives(rolloutId: string): boolean;
  /** The first moments after this coordinator started: hosts not heard from yet are not judged on time. */
  grace: ReconnectGrace;
  /** Bake-watch cancels owed to agents that were not connected when the rollout succeeded. */
  owedCancels: OwedCancels;
  /**
   * Test-only crash points, unset in production: `order:committed` (an apply order's row is committed,
   * not yet sent), `order:sent` (and sent), `result:committed` (a result is committed, not yet acked).
   * The daemon wires them to SIGKILL itself when FLEETPATCH_TEST_CRASH_AT names one.
   */
  checkpoint?: ((name: CoordinatorCrashPoint) => void) | undefined;
}

/**
 * Who drives which rollout. A coordinator alone drives every one (`SOLE_DRIVER`); in a group on
 * PostgreSQL each rollout has one driver at a time, by lease (group/rollout-leases.ts), renewed by the
 * group's heartbeat. The driver ticks, advances and measures its rollouts; reports and verbs may land
 * on any coordinator.
 */
export interface RolloutDriving {
  /** Renews or takes the leases of these rollouts; returns those newly taken (their orders are resent). */
  acquire(rolloutIds: readonly string[]): Promise<string[]>;
  drives(rolloutId: string): boolean;
  /** Forgets leases just taken whose orders could not be resent: the next `acquire` returns them again. */
  forget(rolloutIds: readonly string[]): void;
  /** The fence, asked inside an engine step before acting on the rollout. */
  confirm(rolloutId: string): Promise<boolean>;
  /** Asks whoever drives the rollout to advance it (it moved here: a report, a verb). */
  wakeDriver(rolloutId: string): void;
}

/** The rollout states that need a driver: a finished, halted or aborted rollout is leased by nobody. */
export const DRIVEN_STATES: readonly RolloutState[] = ['scheduled', 'running', 'paused', 'reverting'];

export const SOLE_DRIVER: RolloutDriving = {
  acquire: async () => [],
  drives: () => true,
  forget: () => {},
  confirm: async () => true,
  wakeDriver: () => {},
};

/** Where the coordinator crash matrix (test/coordinator-crash.test.ts) kills the coordinator. */
export type CoordinatorCrashPoint = 'order:committed' | 'order:sent' | 'result:committed';
