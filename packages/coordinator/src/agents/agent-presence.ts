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

  constructor(
    private readonly store: Store,
    private readonly clock: Pick<Clock, 'now'>,
  ) {}

  /** Any sign of life; writing it on every heartbeat would be a write per agent per beat. */
  async seen(agentId: string): Promise<void> {
    const now = this.clock.now();
    if (now - (this.lastSeenWrite.get(agentId) ?? 0) < SEEN_WRITE_INTERVAL_MS) return;
    this.lastSeenWrite.set(agentId, now);
    await this.store.agents.recordSeen(agentId, new Date(now).toISOString());
  }

  async disconnected(agentId: string): Promise<void> {
    this.lastSeenWrite.delete(agentId);
    if (await this.store.agents.get(agentId)) await this.store.agents.recordSeen(agentId, isoAt(this.clock));
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
