import type { EventRecord } from '@fleetpatch/shared';
import type { Db } from './database.js';

export interface NewEvent {
  rolloutId?: string | null;
  hostId?: string | null;
  actor: string;
  type: string;
  fromState?: string | null;
  toState?: string | null;
  data?: Record<string, unknown> | null;
}

/** An events row with its data parsed, as both stores read it. */
export interface EventColumns {
  seq: number;
  rollout_id: string | null;
  host_id: string | null;
  actor: string;
  type: string;
  from_state: string | null;
  to_state: string | null;
  data: Record<string, unknown> | null;
  at: string;
}

/** SQLite holds the data as text. */
type EventRow = Omit<EventColumns, 'data'> & { data: string | null };

/** The record an appended event becomes, less the seq the database gives it. */
export function newEventRecord(event: NewEvent, at: string): Omit<EventRecord, 'seq'> {
  return {
    rolloutId: event.rolloutId ?? null,
    hostId: event.hostId ?? null,
    actor: event.actor,
    type: event.type,
    fromState: event.fromState ?? null,
    toState: event.toState ?? null,
    data: event.data ?? null,
    at,
  };
}

/** The append-only audit log: every transition and every human action. There is no update or delete. */
export class EventRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO events (rollout_id, host_id, actor, type, from_state, to_state, data, at)
         VALUES (@rolloutId, @hostId, @actor, @type, @fromState, @toState, @data, @at)`,
      ),
      forRollout: db.prepare('SELECT * FROM events WHERE rollout_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      all: db.prepare('SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?'),
      latestSeq: db.prepare('SELECT coalesce(max(seq), 0) AS seq FROM events'),
      // The rollout's own events only (host_id IS NULL), from their partial index: a few rows, not the
      // two per host that come after the rollout's end once it is reverted.
      lastRolloutToState: db.prepare(
        `SELECT to_state FROM events INDEXED BY events_rollout_own
         WHERE rollout_id = ? AND host_id IS NULL AND to_state IN (SELECT value FROM json_each(?))
         ORDER BY seq DESC LIMIT 1`,
      ),
    };
  }

  async append(event: NewEvent, at: string): Promise<EventRecord> {
    const record = newEventRecord(event, at);
    // A literal, not `{ ...record, data }`: better-sqlite3 binds a spread-built object's named parameters
    // ~12 µs slower (see HostRunRepository.transition), and every host of a rollout appends two events.
    const info = this.statements.insert.run({
      rolloutId: record.rolloutId,
      hostId: record.hostId,
      actor: record.actor,
      type: record.type,
      fromState: record.fromState,
      toState: record.toState,
      data: record.data && JSON.stringify(record.data),
      at: record.at,
    });
    return { seq: Number(info.lastInsertRowid), ...record };
  }

  /** The latest of `states` the rollout moved to, by its transition events; undefined when none. */
  /** The latest of `states` the rollout itself moved to (its hosts' events are not looked at). */
  async lastRolloutToState(rolloutId: string, states: readonly string[]): Promise<string | undefined> {
    const row = this.statements.lastRolloutToState.get(rolloutId, JSON.stringify(states)) as
      | { to_state: string }
      | undefined;
    return row?.to_state;
  }

  /** Events of one rollout after `afterSeq`, oldest first. */
  async page(rolloutId: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    return (this.statements.forRollout.all(rolloutId, afterSeq, limit) as EventRow[]).map(toRecord);
  }

  /** The newest event's seq (0 with none): where a reader of what comes next starts. */
  async latestSeq(): Promise<number> {
    return (this.statements.latestSeq.get() as { seq: number }).seq;
  }

  /** Every event after `afterSeq` — rollouts, patches, agents — oldest first. */
  async pageAll(afterSeq: number, limit: number): Promise<EventRecord[]> {
    return (this.statements.all.all(afterSeq, limit) as EventRow[]).map(toRecord);
  }
}

function toRecord(row: EventRow): EventRecord {
  return eventFromColumns({
    ...row,
    data: row.data === null ? null : (JSON.parse(row.data) as Record<string, unknown>),
  });
}

export function eventFromColumns(row: EventColumns): EventRecord {
  return {
    seq: row.seq,
    rolloutId: row.rollout_id,
    hostId: row.host_id,
    actor: row.actor,
    type: row.type,
    fromState: row.from_state,
    toState: row.to_state,
    data: row.data,
    at: row.at,
  };
}
