import type { EventRecord } from '@fleetpatch/shared';
import { NotifyChannel } from '../../group/notify-channels.js';
import {
  type EventColumns,
  type EventRepository,
  eventFromColumns,
  type NewEvent,
  newEventRecord,
} from '../event-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

/** The advisory lock key that orders event commits: the bytes of "fpevents" as a signed 64-bit integer. */
export const EVENT_ORDER_LOCK_KEY = '7381511348442526835';

/**
 * The append-only audit log on PostgreSQL: the twin of `EventRepository`. `seq` comes from an
 * identity column; readers page by it, and seqs commit in order (see `append`), so a reader only
 * ever misses an event that has not committed yet.
 */
export class PostgresEventRepository implements Public<EventRepository> {
  constructor(private readonly db: PostgresExecutor) {}

  async append(event: NewEvent, at: string): Promise<EventRecord> {
    const record = newEventRecord(event, at);
    // The lock, taken before the seq is drawn and held to the commit, makes seqs commit in their
    // order across every coordinator of a group: a reader paging by seq (the SSE resume, the event
    // tail) never passes a seq whose event is still to commit. The NOTIFY goes out at the commit.
    const row = await this.db.one<{ seq: number }>(
      `INSERT INTO events (rollout_id, host_id, actor, type, from_state, to_state, data, at)
       SELECT $1, $2, $3, $4, $5, $6, $7::jsonb, $8
         FROM (SELECT pg_advisory_xact_lock(${EVENT_ORDER_LOCK_KEY}), pg_notify('${NotifyChannel.events}', '')) AS ordered
       RETURNING seq`,
      [
        record.rolloutId,
        record.hostId,
        record.actor,
        record.type,
        record.fromState,
        record.toState,
        record.data && JSON.stringify(record.data),
        at,
      ],
    );
    if (row === undefined) throw new Error('INSERT … RETURNING seq returned no row');
    return { seq: row.seq, ...record };
  }

  /** The latest of `states` the rollout itself moved to (its hosts' events are not looked at). */
  async lastRolloutToState(rolloutId: string, states: readonly string[]): Promise<string | undefined> {
    const row = await this.db.one<{ to_state: string }>(
      'SELECT to_state FROM events WHERE rollout_id = $1 AND host_id IS NULL AND to_state = ANY($2::text[]) ORDER BY seq DESC LIMIT 1',
      [rolloutId, states],
    );
    return row?.to_state;
  }

  async page(rolloutId: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    const rows = await this.db.query<EventColumns>(
      'SELECT * FROM events WHERE rollout_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [rolloutId, afterSeq, limit],
    );
    return rows.map(eventFromColumns);
  }

  async latestSeq(): Promise<number> {
    return (await this.db.one<{ seq: number }>('SELECT coalesce(max(seq), 0)::bigint AS seq FROM events'))?.seq ?? 0;
  }

  async pageAll(afterSeq: number, limit: number): Promise<EventRecord[]> {
    const rows = await this.db.query<EventColumns>('SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2', [
      afterSeq,
      limit,
    ]);
    return rows.map(eventFromColumns);
  }
}
