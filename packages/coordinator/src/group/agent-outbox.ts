import type { CoordinatorMessage } from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { PostgresExecutor } from '../store/postgres/postgres-executor.js';
import { NotifyChannel } from './notify-channels.js';

/** How long a message waits for its agent to connect somewhere; its hello brings back what matters. */
const OUTBOX_KEEP_MINUTES = 10;
const RETRY_MS = 1000;

export interface OutboxMessage {
  agentId: string;
  message: CoordinatorMessage;
}

/**
 * Messages for agents connected to another coordinator of the group. The sender writes rows (after
 * the commit that recorded the order, like a direct send) and NOTIFYs; the coordinator holding the
 * agent's socket claims them with `FOR UPDATE SKIP LOCKED`, deletes and sends them in order.
 *
 * At most once from here, which is enough: an order lost between the claim and the socket (the
 * holder died) comes back by the agent's hello to its next coordinator, which resends every order
 * still in flight, and a takeover resends its rollout's too. Agents journal order ids, so a second
 * copy is answered from the journal, never applied twice.
 */
export class AgentOutbox {
  private pending: OutboxMessage[] = [];
  /** The write under way, if any: true once its rows are in, false if it failed (they wait for a retry). */
  private writing: Promise<boolean> | undefined;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: PostgresExecutor,
    private readonly log: Logger,
  ) {}

  /** Queues a message; the rows are written together on the next turn (a dispatch sends many). */
  enqueue(agentId: string, message: CoordinatorMessage): void {
    this.pending.push({ agentId, message });
    if (!this.writing && !this.retry) setImmediate(() => void this.flush());
  }

  /**
   * Resolves once every message queued so far is written (tests, shutdown); rejects once a write
   * fails (a shutdown does not wait for a database that is away: the agents' next hellos bring back
   * what their orders needed). A write already under way is waited for: before, `drain` called a
   * `flush` that returned at once while one was, and spun on the microtask queue, never letting that
   * write's I/O finish (a coordinator's shutdown hung at 100 % of a core).
   */
  async drain(): Promise<void> {
    for (;;) {
      const written = await (this.writing ?? (this.pending.length > 0 ? this.flush() : undefined));
      if (written === undefined) return;
      if (!written) throw new Error('writing the agent outbox failed');
    }
  }

  /** Claims (deletes) the messages for these agents, oldest first. */
  async claim(agentIds: readonly string[]): Promise<OutboxMessage[]> {
    if (agentIds.length === 0) return [];
    const rows = await this.db.query<{ id: number; agent_id: string; message: CoordinatorMessage }>(
      `DELETE FROM agent_outbox WHERE id IN (
         SELECT id FROM agent_outbox WHERE agent_id = ANY($1::text[]) ORDER BY id LIMIT 5000 FOR UPDATE SKIP LOCKED)
       RETURNING id, agent_id, message`,
      [agentIds],
    );
    return rows.sort((a, b) => a.id - b.id).map((row) => ({ agentId: row.agent_id, message: row.message }));
  }

  /** Drops messages no agent came for. */
  async expire(): Promise<void> {
    await this.db.query(
      `DELETE FROM agent_outbox WHERE created_at < now() - interval '${OUTBOX_KEEP_MINUTES} minutes'`,
    );
  }

  stop(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
  }

  /** Writes what is pending, or joins the write under way. */
  private flush(): Promise<boolean> {
    if (this.writing) return this.writing;
    if (this.pending.length === 0) return Promise.resolve(true);
    const writing = this.write().finally(() => {
      this.writing = undefined;
    });
    this.writing = writing;
    return writing;
  }

  private async write(): Promise<boolean> {
    const batch = this.pending;
    this.pending = [];
    try {
      // One statement: the rows and the wake-up commit together (NOTIFY is delivered at commit).
      await this.db.query(
        `INSERT INTO agent_outbox (agent_id, message, created_at)
           SELECT m.agent_id, m.message, now()
             FROM unnest($1::text[], $2::jsonb[]) AS m (agent_id, message), (SELECT pg_notify($3, '')) AS wake`,
        [batch.map((m) => m.agentId), batch.map((m) => JSON.stringify(m.message)), NotifyChannel.outbox],
      );
    } catch (err) {
      // The database is away: keep the messages, in order, and try again (hellos cover a longer outage).
      this.log.warn({ err, messages: batch.length }, 'writing the agent outbox failed; retrying');
      this.pending = [...batch, ...this.pending];
      this.retry ??= setTimeout(() => {
        this.retry = undefined;
        void this.flush();
      }, RETRY_MS);
      this.retry.unref();
      return false;
    }
    if (this.pending.length > 0 && !this.retry) setImmediate(() => void this.flush());
    return true;
  }
}
