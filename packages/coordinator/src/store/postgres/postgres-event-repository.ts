import type { EventRecord } from '@fleetpatch/shared';
import {
  type EventColumns,
  type EventRepository,
  eventFromColumns,
  type NewEvent,
  newEventRecord,
} from '../event-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

/**
 * The append-only audit log on PostgreSQL: the twin of `EventRepository`. `seq` comes from an
 * identity column; readers page by it, so a reader only ever misses an event that has not committed
 * yet — with one coordinator writing one transaction at a time, seqs commit in order.
 */
export class PostgresEventRepository implements Public<EventRepository> {
  constructor(private readonly db: PostgresExecutor) {}

  async append(event: NewEvent, at: string): Promise<EventRecord> {
    const record = newEventRecord(event, at);
    const row = await this.db.one<{ seq: number }>(
      `INSERT INTO events (rollout_id, host_id, actor, type, from_state, to_state, data, at)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING seq`,
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

  async lastToState(rolloutId: string, states: readonly string[]): Promise<string | undefined> {
    const row = await this.db.one<{ to_state: string }>(
      'SELECT to_state FROM events WHERE rollout_id = $1 AND to_state = ANY($2::text[]) ORDER BY seq DESC LIMIT 1',
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

  async pageAll(afterSeq: number, limit: number): Promise<EventRecord[]> {
    const rows = await this.db.query<EventColumns>('SELECT * FROM events WHERE seq > $1 ORDER BY seq LIMIT $2', [
      afterSeq,
      limit,
    ]);
    return rows.map(eventFromColumns);
  }
}
