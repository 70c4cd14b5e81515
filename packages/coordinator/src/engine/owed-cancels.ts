/**
 * The bake-watch cancels a rollout's success could not deliver: at success the hosts still watching
 * their bake are sent `order.cancel` (see endBakeWatches), and a channel drops a message for an agent
 * with no live connection. Each cancel is owed to its agent until the watch it ends could have ended by
 * itself, and sent after its next hello. In memory: a coordinator restarted meanwhile owes nothing, and
 * the watch then ends by itself (a failure it still reports is recorded as after the rollout's end, not
 * counted). In a group the outbox also keeps it for an agent that connects to another member.
 */
export class OwedCancels {
  private readonly byAgent = new Map<string, { orderId: string; until: number }[]>();

  /** The watch of `orderId` on `agentId` may run until `until` (ms): its cancel is owed until then. */
  owe(agentId: string, orderId: string, until: number): void {
    const owed = this.byAgent.get(agentId) ?? [];
    owed.push({ orderId, until });
    this.byAgent.set(agentId, owed);
  }

  /** The cancels owed to `agentId` that still end a watch at `now`; none is owed twice. */
  take(agentId: string, now: number): string[] {
    const owed = this.byAgent.get(agentId);
    if (owed === undefined) return [];
    this.byAgent.delete(agentId);
    return owed.filter(({ until }) => now < until).map(({ orderId }) => orderId);
  }

  /** Forgets what no watch needs any more at `now` (agents that never came back). */
  prune(now: number): void {
    for (const [agentId, owed] of this.byAgent) {
      const live = owed.filter(({ until }) => now < until);
      if (live.length === 0) this.byAgent.delete(agentId);
      else this.byAgent.set(agentId, live);
    }
  }
}
