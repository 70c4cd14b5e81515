import { type Clock, isoAt } from '@fleetpatch/shared';
import { SYSTEM } from '../engine/rollout-transition.js';
import type { Store } from '../store/store.js';

/** last_seen is for people: written at most this often per agent while it is connected. */
const SEEN_WRITE_INTERVAL_MS = 30_000;

/**
 * What the hub's socket events write about agents: when each was last seen, and the refusals of a
 * second connection with a live agent's credential. Stamped with the coordinator's one clock.
 */
export class AgentPresence {
  private readonly lastSeenWrite = new Map<string, number>();
  /** last_seen writes not yet made: one transaction takes all that came in the same turn of the loop. */
  private readonly unwritten = new Map<string, string>();
  /** The batch that takes new writes, until its turn comes. */
  private next: Promise<void> | null = null;
  /** Batches not yet committed (or failed), for `flush`. */
  private readonly outstanding = new Set<Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly clock: Pick<Clock, 'now'>,
  ) {}

  /** Any sign of life; writing it on every heartbeat would be a write per agent per beat. */
  async seen(agentId: string): Promise<void> {
    const now = this.clock.now();
    if (now - (this.lastSeenWrite.get(agentId) ?? 0) < SEEN_WRITE_INTERVAL_MS) return;
    this.lastSeenWrite.set(agentId, now);
    await this.recordSeen(agentId, new Date(now).toISOString());
  }

  async disconnected(agentId: string): Promise<void> {
    this.lastSeenWrite.delete(agentId);
    // An agent that is gone from the store (removed) matches no row: the UPDATE writes nothing.
    await this.recordSeen(agentId, isoAt(this.clock));
  }

  /** Resolves once every last_seen write asked for so far is committed or has failed (shutdown). */
  async flush(): Promise<void> {
    while (this.outstanding.size > 0) await Promise.allSettled([...this.outstanding]);
  }

  /**
   * Resolves once the write is committed. A reset link drops the whole fleet at once: a commit per
   * agent gone was ~60 µs of the coordinator's CPU each, before the fleet's hellos could be heard.
   */
  private recordSeen(agentId: string, at: string): Promise<void> {
    this.unwritten.set(agentId, at);
    if (this.next) return this.next;
    const batch = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      this.next = null;
      const writes = [...this.unwritten];
      this.unwritten.clear();
      await this.store.transaction(async () => {
        for (const [id, seenAt] of writes) await this.store.agents.recordSeen(id, seenAt);
      });
    });
    this.next = batch;
    this.outstanding.add(batch);
    const settled = () => this.outstanding.delete(batch);
    batch.then(settled, settled);
    return batch;
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
