import type { EventRecord } from '@fleetpatch/shared';
import { AgentRepository } from './agent-repository.js';
import { type Db, openDatabase } from './database.js';
import { EventRepository, type NewEvent } from './event-repository.js';
import { HostRunRepository } from './host-run-repository.js';
import { PatchRepository } from './patch-repository.js';
import { RolloutRepository } from './rollout-repository.js';

export type EventListener = (event: EventRecord) => void;

/**
 * The coordinator's store: repositories over one SQLite connection, and `transaction()` — the only
 * way domain code writes. Events appended inside a transaction reach live listeners (the SSE stream,
 * webhooks) only after it commits, so nobody is ever told about a change that did not happen.
 */
export class Store {
  readonly agents: AgentRepository;
  readonly patches: PatchRepository;
  readonly rollouts: RolloutRepository;
  readonly hostRuns: HostRunRepository;
  private readonly eventRepository: EventRepository;
  private readonly listeners = new Set<EventListener>();
  private pending: EventRecord[] | null = null;

  constructor(readonly db: Db) {
    this.agents = new AgentRepository(db);
    this.patches = new PatchRepository(db);
    this.rollouts = new RolloutRepository(db);
    this.hostRuns = new HostRunRepository(db);
    this.eventRepository = new EventRepository(db);
  }

  static open(file: string): Store {
    return new Store(openDatabase(file));
  }

  /** Runs `fn` in one IMMEDIATE transaction; nested calls join the outer one. */
  transaction<T>(fn: () => T): T {
    if (this.pending !== null) return fn();
    this.pending = [];
    let committed: EventRecord[] = [];
    try {
      const result = this.db.transaction(fn).immediate();
      committed = this.pending;
      return result;
    } finally {
      this.pending = null;
      for (const event of committed) this.publish(event);
    }
  }

  /** Appends an audit event; must run inside `transaction()`. */
  appendEvent(event: NewEvent, at: string): EventRecord {
    if (this.pending === null) throw new Error('appendEvent must run inside Store.transaction()');
    const record = this.eventRepository.append(event, at);
    this.pending.push(record);
    return record;
  }

  events(rolloutId: string, afterSeq: number, limit: number): EventRecord[] {
    return this.eventRepository.page(rolloutId, afterSeq, limit);
  }

  allEvents(afterSeq: number, limit: number): EventRecord[] {
    return this.eventRepository.pageAll(afterSeq, limit);
  }

  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private publish(event: EventRecord): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A failing listener (a closed SSE client) must not break the transition that was committed.
      }
    }
  }
}
