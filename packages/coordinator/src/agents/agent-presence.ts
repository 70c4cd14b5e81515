import { type Clock, isoAt } from '@fleetpatch/shared';
import { SYSTEM } from '../engine/rollout-transition.js';
import type { Store } from '../store/store.js';

/** last_seen is for people: written at most this often per agent while it is connected. */
const SEEN_WRITE_INTERVAL_MS = 30_000;

/**
 * How long a heartbeat's last_seen write waits for others to share its transaction. Heartbeats come
 * spread over the whole interval, so the next turn of the loop found one or two: at 10,000 agents a
 * commit for nearly every write, ~330 a second, a fifth of what the idle fleet cost the coordinator.
 * A second later is nothing to a person reading "last seen".
 */
export const SEEN_BATCH_MS = 1000;

/** The write batch being filled: it starts when `start` is called, by its timer or sooner. */
interface PendingBatch {
  start: () => void;
  /** Set while the batch waits out SEEN_BATCH_MS; cleared once something asked for it sooner. */
  timer: NodeJS.Timeout | undefined;
  committed: Promise<void>;
}

/**
 * What the hub's socket events write about agents: when each was last seen, and the refusals of a
 * second connection with a live agent's credential. Stamped with the coordinator's one clock.
 */
export class AgentPresence {
  private readonly lastSeenWrite = new Map<string, number>();
  /** last_seen writes not yet made: one transaction takes all that came before its batch started. */
  private readonly unwritten = new Map<string, string>();
  /** The batch that takes new writes, until it starts. */
  private pending: PendingBatch | null = null;
  /** Batches not yet committed (or failed), for `flush`. */
  private readonly outstanding = new Set<Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly clock: Pick<Clock, 'now'>,
    private readonly seenBatchMs = SEEN_BATCH_MS,
  ) {}

  /** Any sign of life; writing it on every heartbeat would be a write per agent per beat. */
  async seen(agentId: string): Promise<void> {
    const now = this.clock.now();
    if (now - (this.lastSeenWrite.get(agentId) ?? 0) < SEEN_WRITE_INTERVAL_MS) return;
    this.lastSeenWrite.set(agentId, now);
    await this.recordSeen(agentId, new Date(now).toISOString(), 'later');
  }

  async disconnected(agentId: string): Promise<void> {
    this.lastSeenWrite.delete(agentId);
    // An agent that is gone from the store (removed) matches no row: the UPDATE writes nothing.
    await this.recordSeen(agentId, isoAt(this.clock), 'soon');
  }

  /** Resolves once every last_seen write asked for so far is committed or has failed (shutdown). */
  async flush(): Promise<void> {
    if (this.pending) this.startSoon(this.pending);
    while (this.outstanding.size > 0) await Promise.allSettled([...this.outstanding]);
  }

  /**
   * Resolves once the write is committed. A disconnect is written in the next turn of the loop (a
   * reset link drops the whole fleet at once: a commit per agent gone was ~60 µs of the coordinator's
   * CPU each, before the fleet's hellos could be heard), a heartbeat's up to SEEN_BATCH_MS later.
   */
  private recordSeen(agentId: string, at: string, when: 'soon' | 'later'): Promise<void> {
    this.unwritten.set(agentId, at);
    const batch = this.pending ?? this.newBatch();
    if (when === 'soon') this.startSoon(batch);
    return batch.committed;
  }

  private newBatch(): PendingBatch {
    let start = () => {};
    const started = new Promise<void>((resolve) => {
      start = resolve;
    });
    const committed = started.then(async () => {
      this.pending = null;
      const writes = [...this.unwritten];
      this.unwritten.clear();
      // One statement for the batch on PostgreSQL: a disconnect of the whole fleet is one round trip.
      await this.store.transaction(async () => await this.store.agents.recordSightings(writes));
    });
    const batch: PendingBatch = { start, timer: setTimeout(start, this.seenBatchMs), committed };
    batch.timer?.unref();
    this.pending = batch;
    this.outstanding.add(committed);
    const settled = () => this.outstanding.delete(committed);
    committed.then(settled, settled);
    return batch;
  }

  private startSoon(batch: PendingBatch): void {
    if (batch.timer === undefined) return;
    clearTimeout(batch.timer);
    batch.timer = undefined;
    setImmediate(batch.start);
  }

  /** A security event: someone else holds this agent's credential (or the agent runs twice). */
  async duplicateRefused(agentId: string, detail: { remote: string; refusedSinceLast: number }): Promise<void> {
    const { store } = this;
    await store.transaction(
      async () =>
        await store.appendEvent(
          { hostId: agentId, actor: SYSTEM, type: 'agent.duplicate_refused', data: { ...detail } },
          isoAt(this.clock),
        ),
    );
  }
}
