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
import type { HeldWrites, PostgresExecutor } from './postgres-executor.js';

/** The advisory lock key that orders event commits: the bytes of "fpevents" as a signed 64-bit integer. */
export const EVENT_ORDER_LOCK_KEY = '7381511348442526835';

/**
 * The append-only audit log on PostgreSQL: the twin of `EventRepository`. `seq` comes from an
 * identity column; readers page by it, and seqs commit in order (see `append`), so a reader only
 * ever misses an event that has not committed yet.
 */
export class PostgresEventRepository implements Public<EventRepository> {
  constructor(private readonly db: PostgresExecutor) {}

  /**
   * Inside a transaction the row is held back and written with the transaction's other events in one
   * statement before it commits (or before a statement of it that reads events): a round trip per
   * transaction, not per event. The record's `seq` is filled in then — the store publishes records
   * only after the commit. Outside a transaction it is written at once.
   */
  async append(event: NewEvent, at: string): Promise<EventRecord> {
    const record: EventRecord = { seq: 0, ...newEventRecord(event, at) };
    const held = this.db.heldWrites(this, () => new HeldEvents(this.db));
    if (held) held.hold(record);
    else await insertEvents(this.db, [record]);
    return record;
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

/** A statement that names the events table (and so must see the rows held back before it runs). */
const NAMES_EVENTS = /\bevents\b/;

/**
 * A transaction's events, held back to be written together (see `PostgresEventRepository.append`):
 * every one appended in it and not rolled back, in their order, the first `written` of them written.
 */
class HeldEvents implements HeldWrites {
  private readonly records: EventRecord[] = [];
  private written = 0;

  constructor(private readonly db: PostgresExecutor) {}

  hold(record: EventRecord): void {
    this.records.push(record);
  }

  mustPrecede(text: string): boolean {
    return this.written < this.records.length && NAMES_EVENTS.test(text);
  }

  async flush(): Promise<void> {
    const from = this.written;
    if (from === this.records.length) return;
    // Counted as written first: the INSERT names the events table, and must not flush them again.
    this.written = this.records.length;
    try {
      await insertEvents(this.db, this.records.slice(from));
    } catch (err) {
      this.written = from;
      throw err;
    }
  }

  mark(): EventsMark {
    return { appended: this.records.length, written: this.written };
  }

  /**
   * The rollback undid what was appended after the savepoint, and every write made after it: the
   * events appended before it but written since (a read inside it flushed them) are held again, their
   * seqs to be drawn anew.
   */
  rollBackTo(mark: EventsMark | undefined): void {
    const { appended, written } = mark ?? { appended: 0, written: 0 };
    this.records.length = appended;
    for (const record of this.records.slice(written)) record.seq = 0;
    this.written = written;
  }
}

/** Where a transaction's events stood as a savepoint opened. */
interface EventsMark {
  appended: number;
  written: number;
}

/**
 * Writes `records` in one statement, in their order, and sets each one's `seq`. The lock, taken before
 * any seq is drawn and held to the commit, makes seqs commit in their order across every coordinator
 * of a group: a reader paging by seq (the SSE resume, the event tail) never passes a seq whose event is
 * still to commit. The NOTIFY goes out at the commit.
 */
async function insertEvents(db: PostgresExecutor, records: EventRecord[]): Promise<void> {
  const column = <K extends keyof EventRecord>(key: K) => records.map((record) => record[key]);
  const rows = await db.query<{ seq: number }>(
    `INSERT INTO events (rollout_id, host_id, actor, type, from_state, to_state, data, at)
     SELECT e.rollout_id, e.host_id, e.actor, e.type, e.from_state, e.to_state, e.data::jsonb, e.at::timestamptz
       FROM (SELECT pg_advisory_xact_lock(${EVENT_ORDER_LOCK_KEY}), pg_notify('${NotifyChannel.events}', '')) AS ordered,
            unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
              WITH ORDINALITY AS e(rollout_id, host_id, actor, type, from_state, to_state, data, at, n)
      ORDER BY e.n
     RETURNING seq`,
    [
      column('rolloutId'),
      column('hostId'),
      column('actor'),
      column('type'),
      column('fromState'),
      column('toState'),
      records.map((record) => record.data && JSON.stringify(record.data)),
      column('at'),
    ],
  );
  if (rows.length !== records.length)
    throw new Error(`INSERT … RETURNING seq returned ${rows.length} rows for ${records.length} events`);
  // Seqs are drawn as the rows are inserted, in the ORDER BY's order; RETURNING's order is not promised.
  const seqs = rows.map((row) => row.seq).sort((a, b) => a - b);
  records.forEach((record, i) => {
    record.seq = seqs[i] as number;
  });
}
