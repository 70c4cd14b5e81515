import type { HostRunState } from '@fleetpatch/shared';
import type { HostRunRecord, HostRunWrite } from '../store/host-run-repository.js';
import type { EngineDeps } from './engine-interfaces.js';
import { canTransitionHostRun, IN_FLIGHT_HOST_STATES } from './host-run-states.js';
import { isoNow } from './rollout-transition.js';

/** The audit row of a host transition: `type` defaults to `host.<to>`. */
export interface HostRunEvent {
  actor: string;
  type?: string;
  data?: Record<string, unknown> | null;
}

/**
 * The engine wrote a host-run state the table does not allow, or from a state the row is no longer
 * in. Always a bug in the engine, never a request to refuse: it is thrown (not a `FleetError`, so an
 * HTTP caller sees a 500, not a 409 that blames them), and the transaction around it rolls back.
 */
export class IllegalHostTransitionError extends Error {
  constructor(
    readonly run: Pick<HostRunRecord, 'rolloutId' | 'hostId'>,
    readonly from: HostRunState,
    readonly to: HostRunState,
    why: string,
  ) {
    super(`host run ${run.hostId} of ${run.rolloutId}: ${from} → ${to} ${why}`);
    this.name = 'IllegalHostTransitionError';
  }
}

/**
 * Must run inside a transaction. Moves a host run from `run.state` to `write.to`: checks the move
 * against `HOST_RUN_TRANSITIONS`, writes it only if the row is still in `run.state`, and appends its
 * audit row (`null`: the move is recorded by its rollout's own event, as a retry's requeues are).
 * Throws `IllegalHostTransitionError` otherwise; nothing is written then.
 */
export async function transitionHostRun(
  deps: Pick<EngineDeps, 'store' | 'clock'>,
  run: Pick<HostRunRecord, 'rolloutId' | 'hostId' | 'state'>,
  write: HostRunWrite,
  event: HostRunEvent | null,
): Promise<void> {
  const { store, clock } = deps;
  const from = run.state;
  if (!canTransitionHostRun(from, write.to)) {
    throw new IllegalHostTransitionError(run, from, write.to, 'is not in HOST_RUN_TRANSITIONS');
  }
  if (!(await store.hostRuns.transition(run.rolloutId, run.hostId, from, withDelivery(write, clock)))) {
    throw new IllegalHostTransitionError(
      run,
      from,
      write.to,
      'from a record that is stale: the row is not in that state',
    );
  }
  if (event === null) return;
  await store.appendEvent(
    {
      rolloutId: run.rolloutId,
      hostId: run.hostId,
      actor: event.actor,
      type: event.type ?? `host.${write.to}`,
      fromState: from,
      toState: write.to,
      data: event.data ?? null,
    },
    isoNow(clock),
  );
}

/** One queued run's dispatch for `dispatchHostRuns`: its new order and its audit row. */
export interface HostRunDispatch {
  run: Pick<HostRunRecord, 'rolloutId' | 'hostId' | 'state'>;
  orderId: string;
  /** `at` when the host is connected to take the order, null when it waits for the host. */
  deliveredAt: number | null;
  event: HostRunEvent;
}

/**
 * Must run inside a transaction. `transitionHostRun` to `dispatched` for queued runs of one rollout,
 * with one dispatch instant, their rows written in one call (a dispatch burst on PostgreSQL: one round
 * trip instead of one per host). The same checks: a run not queued, or no longer queued by its row,
 * throws `IllegalHostTransitionError` and the transaction around it rolls back.
 */
export async function dispatchHostRuns(
  deps: Pick<EngineDeps, 'store' | 'clock'>,
  rolloutId: string,
  at: number,
  dispatches: readonly HostRunDispatch[],
): Promise<void> {
  const { store, clock } = deps;
  const hosts = new Set<string>();
  for (const { run } of dispatches) {
    if (run.rolloutId !== rolloutId || run.state !== 'queued')
      throw new IllegalHostTransitionError(run, run.state, 'dispatched', `is not a queued run of ${rolloutId}`);
    if (hosts.has(run.hostId)) throw new IllegalHostTransitionError(run, run.state, 'dispatched', 'twice in one burst');
    hosts.add(run.hostId);
  }
  const written = new Set(
    await store.hostRuns.dispatchQueued(
      rolloutId,
      at,
      dispatches.map(({ run, orderId, deliveredAt }) => ({ hostId: run.hostId, orderId, deliveredAt })),
    ),
  );
  const stale = dispatches.find(({ run }) => !written.has(run.hostId));
  if (stale !== undefined) {
    throw new IllegalHostTransitionError(
      stale.run,
      'queued',
      'dispatched',
      'from a record that is stale: the row is not in that state',
    );
  }
  for (const { run, event } of dispatches) {
    await store.appendEvent(
      {
        rolloutId,
        hostId: run.hostId,
        actor: event.actor,
        type: event.type ?? 'host.dispatched',
        fromState: 'queued',
        toState: 'dispatched',
        data: event.data ?? null,
      },
      isoNow(clock),
    );
  }
}

/**
 * A run reaching a phase its agent reported (in flight, past `dispatched`) has had its order
 * delivered: now, unless an earlier instant is on record (it was handed to the host's connection, or
 * an earlier phase said so), which the repository keeps. A dispatch names its own delivery instant.
 */
function withDelivery(write: HostRunWrite, clock: EngineDeps['clock']): HostRunWrite {
  return reachesReportedPhase(write) ? { ...write, deliveredAt: clock.now() } : write;
}

/** A move into a phase past `dispatched` that is still in flight (never `queued` or `reverting`, which are not). */
function reachesReportedPhase(
  write: HostRunWrite,
): write is Exclude<HostRunWrite, { to: 'dispatched' | 'queued' | 'reverting' }> {
  return write.to !== 'dispatched' && IN_FLIGHT_HOST_STATES.includes(write.to);
}
