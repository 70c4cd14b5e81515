import type { AgentRepository } from './agent-repository.js';
import type { AnalysisRepository } from './analysis-repository.js';
import type { EventRepository } from './event-repository.js';
import type { HostRunRepository } from './host-run-repository.js';
import type { InventoryRepository } from './inventory-repository.js';
import type { JoinTokenRepository } from './join-token-repository.js';
import type { PatchRepository } from './patch-repository.js';
import type { RolloutRepository } from './rollout-repository.js';
import type { StatementRepository } from './statement-repository.js';

/**
 * A class's public members as an interface. The SQLite repositories are the reference: a PostgreSQL
 * repository implements `Public<ThatClass>`, so the two cannot drift apart in what they offer.
 */
export type Public<T> = { [K in keyof T]: T[K] };

/** What the engine and the API read and write, whichever database is under them. */
export interface Repositories {
  readonly agents: Public<AgentRepository>;
  readonly joinTokens: Public<JoinTokenRepository>;
  readonly patches: Public<PatchRepository>;
  readonly rollouts: Public<RolloutRepository>;
  readonly hostRuns: Public<HostRunRepository>;
  readonly inventory: Public<InventoryRepository>;
  readonly statements: Public<StatementRepository>;
  readonly analyses: Public<AnalysisRepository>;
  /** The audit trail; written only through `Store.appendEvent`, inside a transaction. */
  readonly events: Public<EventRepository>;
}

/** How many rollouts and host runs are in each state (the metrics read it on every scrape). */
export interface StateCountsReader {
  rollouts(): Promise<Map<string, number>>;
  hostRuns(): Promise<Map<string, number>>;
}

/**
 * One database under the store: its repositories, and the one way to write — `inTransaction`, which
 * runs `fn` between BEGIN and COMMIT (ROLLBACK when it throws) on the connection the repositories
 * use while `fn` runs. `Store` adds what does not depend on the database: transactions one at a
 * time, events published after the commit, callbacks run after it.
 */
export interface StoreBackend extends Repositories {
  readonly kind: 'sqlite' | 'postgres';
  readonly stateCounts: StateCountsReader;
  inTransaction<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Must run inside `inTransaction`. Runs `fn` as a savepoint of the transaction: when `fn` throws,
   * what it wrote is rolled back and the transaction goes on. A rollback that fails throws
   * `SavepointLost`: the transaction must not commit then.
   */
  inSavepoint<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * A savepoint could not be rolled back to: what the failed part wrote may still be in the
 * transaction, which must roll back whole rather than commit it.
 */
export class SavepointLost extends Error {
  constructor(cause: unknown) {
    super('a savepoint could not be rolled back; the transaction must not commit', { cause });
    this.name = 'SavepointLost';
  }
}
