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

interface EventRow {
  seq: number;
  rollout_id: string | null;
  host_id: string | null;
  actor: string;
  type: string;
  from_state: string | null;
  to_state: string | null;
  data: string | null;
  at: string;
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
      lastToState: db.prepare(
        'SELECT to_state FROM events WHERE rollout_id = ? AND to_state IN (SELECT value FROM json_each(?)) ORDER BY seq DESC LIMIT 1',
      ),
    };
  }

  async append(event: NewEvent, at: string): Promise<EventRecord> {
    const record = {
      rolloutId: event.rolloutId ?? null,
      hostId: event.hostId ?? null,
      actor: event.actor,
      type: event.type,
      fromState: event.fromState ?? null,
      toState: event.toState ?? null,
      data: event.data ?? null,
      at,
    };
    const info = this.statements.insert.run({ ...record, data: record.data && JSON.stringify(record.data) });
    return { seq: Number(info.lastInsertRowid), ...record };
  }

  /** The latest of `states` the rollout moved to, by its transition events; undefined when none. */
  async lastToState(rolloutId: string, states: readonly string[]): Promise<string | undefined> {
    const row = this.statements.lastToState.get(rolloutId, JSON.stringify(states)) as { to_state: string } | undefined;
    return row?.to_state;
  }

  /** Events of one rollout after `afterSeq`, oldest first. */
  async page(rolloutId: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    return (this.statements.forRollout.all(rolloutId, afterSeq, limit) as EventRow[]).map(toRecord);
  }

  /** Every event after `afterSeq` — rollouts, patches, agents — oldest first. */
  async pageAll(afterSeq: number, limit: number): Promise<EventRecord[]> {
    return (this.statements.all.all(afterSeq, limit) as EventRow[]).map(toRecord);
  }
}

function toRecord(row: EventRow): EventRecord {
  return {
    seq: row.seq,
    rolloutId: row.rollout_id,
    hostId: row.host_id,
    actor: row.actor,
    type: row.type,
    fromState: row.from_state,
    toState: row.to_state,
    data: row.data === null ? null : (JSON.parse(row.data) as Record<string, unknown>),
    at: row.at,
  };
}
