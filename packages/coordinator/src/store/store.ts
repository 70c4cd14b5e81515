import { APPLY_END_STATES, type EventRecord, type RolloutState } from '@fleetpatch/shared';
import { AgentRepository } from './agent-repository.js';
import { AnalysisRepository } from './analysis-repository.js';
import { type Db, openDatabase } from './database.js';
import { EventRepository, type NewEvent } from './event-repository.js';
import { HostRunRepository } from './host-run-repository.js';
import { InventoryRepository } from './inventory-repository.js';
import { JoinTokenRepository } from './join-token-repository.js';
import { PatchRepository } from './patch-repository.js';
import { RolloutRepository } from './rollout-repository.js';
import { StatementRepository } from './statement-repository.js';

export type EventListener = (event: EventRecord) => void;

/**
 * A host's live phase, as its agent reported it (`order.progress`): not an audit row. The phase is
 * on the host run (status shows it); the notice only tells live readers (the event stream) to look.
 */
export interface ProgressNotice {
  type: 'host.progress';
  rolloutId: string;
  hostId: string;
  state: string;
  at: string;
  message?: string;
}
export type ProgressListener = (notice: ProgressNotice) => void;
/** Told how long each outermost transaction took (seconds) and whether it committed. */
export type TransactionObserver = (seconds: number, committed: boolean) => void;

/**
 * The coordinator's store: repositories over one SQLite connection, and `transaction()` — the only
 * way domain code writes. Events appended inside a transaction reach live listeners (the SSE stream,
 * webhooks) only after it commits, so nobody is ever told about a change that did not happen.
 */
export class Store {
  readonly agents: AgentRepository;
  readonly joinTokens: JoinTokenRepository;
  readonly patches: PatchRepository;
  readonly rollouts: RolloutRepository;
  readonly hostRuns: HostRunRepository;
  readonly inventory: InventoryRepository;
  readonly statements: StatementRepository;
  readonly analyses: AnalysisRepository;
  private readonly eventRepository: EventRepository;
  private readonly listeners = new Set<EventListener>();
  private readonly progressListeners = new Set<ProgressListener>();
  private pending: EventRecord[] | null = null;
  /** Progress noted in the open transaction, one per host run (the latest wins): coalesced per burst. */
  private pendingProgress = new Map<string, ProgressNotice>();
  private afterCommits: (() => void)[] = [];
  private transactionObserver: TransactionObserver | null = null;

  constructor(readonly db: Db) {
    this.agents = new AgentRepository(db);
    this.joinTokens = new JoinTokenRepository(db);
    this.patches = new PatchRepository(db);
    this.rollouts = new RolloutRepository(db);
    this.hostRuns = new HostRunRepository(db);
    this.inventory = new InventoryRepository(db);
    this.statements = new StatementRepository(db);
    this.analyses = new AnalysisRepository(db);
    this.eventRepository = new EventRepository(db);
  }

  static open(file: string): Store {
    const store = new Store(openDatabase(file));
    store.patches.backfillDigests();
    return store;
  }

  /** Runs `fn` in one IMMEDIATE transaction; nested calls join the outer one. */
  transaction<T>(fn: () => T): T {
    if (this.pending !== null) return fn();
    this.pending = [];
    this.afterCommits = [];
    this.pendingProgress = new Map();
    let committed: EventRecord[] = [];
    let progress: ProgressNotice[] = [];
    let callbacks: (() => void)[] = [];
    const started = performance.now();
    let done = false;
    try {
      const result = this.db.transaction(fn).immediate();
      committed = this.pending;
      progress = [...this.pendingProgress.values()];
      callbacks = this.afterCommits;
      done = true;
      return result;
    } finally {
      this.transactionObserver?.((performance.now() - started) / 1000, done);
      this.pending = null;
      this.afterCommits = [];
      this.pendingProgress = new Map();
      for (const event of committed) this.publish(event);
      for (const notice of progress) this.publishProgress(notice);
      runAll(callbacks);
    }
  }

  /**
   * Must run inside `transaction()`. Runs `fn` once the outermost transaction has committed, and
   * never if it rolls back: an order is sent only when the row that records it is on disk (a crash
   * in between leaves a committed order for the agent's hello to pick up, never a sent one that is
   * not recorded).
   */
  afterCommit(fn: () => void): void {
    if (this.pending === null) throw new Error('afterCommit must run inside Store.transaction()');
    this.afterCommits.push(fn);
  }

  /** Appends an audit event; must run inside `transaction()`. */
  appendEvent(event: NewEvent, at: string): EventRecord {
    if (this.pending === null) throw new Error('appendEvent must run inside Store.transaction()');
    const record = this.eventRepository.append(event, at);
    this.pending.push(record);
    return record;
  }

  /**
   * Must run inside `transaction()`. Tells live readers about a host's new phase once the transaction
   * commits (never if it rolls back); within one transaction only a host run's latest phase goes out.
   */
  noteProgress(notice: ProgressNotice): void {
    if (this.pending === null) throw new Error('noteProgress must run inside Store.transaction()');
    this.pendingProgress.set(`${notice.rolloutId}\u0000${notice.hostId}`, notice);
  }

  /** How the rollout's apply last came to rest (succeeded, halted or aborted), by its audit trail. */
  applyEndOf(rolloutId: string): RolloutState | undefined {
    return this.eventRepository.lastToState(rolloutId, APPLY_END_STATES) as RolloutState | undefined;
  }

  events(rolloutId: string, afterSeq: number, limit: number): EventRecord[] {
    return this.eventRepository.page(rolloutId, afterSeq, limit);
  }

  allEvents(afterSeq: number, limit: number): EventRecord[] {
    return this.eventRepository.pageAll(afterSeq, limit);
  }

  /** One observer (the metrics); the time is measured around the commit, listeners excluded. */
  observeTransactions(observer: TransactionObserver): void {
    this.transactionObserver = observer;
  }

  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onProgress(listener: ProgressListener): () => void {
    this.progressListeners.add(listener);
    return () => this.progressListeners.delete(listener);
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

  private publishProgress(notice: ProgressNotice): void {
    for (const listener of this.progressListeners) {
      try {
        listener(notice);
      } catch {
        // As for events: a failing reader must not break what was committed.
      }
    }
  }
}

/**
 * Runs every callback even when one throws (the transaction is committed either way, so the others'
 * sends must still go), then rethrows the first error so the caller does not hide it.
 */
function runAll(callbacks: readonly (() => void)[]): void {
  let first: unknown;
  let failed = false;
  for (const callback of callbacks) {
    try {
      callback();
    } catch (err) {
      if (!failed) first = err;
      failed = true;
    }
  }
  if (failed) throw first;
}
