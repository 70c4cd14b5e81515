import { AgentRepository } from './agent-repository.js';
import { AnalysisRepository } from './analysis-repository.js';
import type { Db } from './database.js';
import { EventRepository } from './event-repository.js';
import { HostRunRepository } from './host-run-repository.js';
import { InventoryRepository } from './inventory-repository.js';
import { JoinTokenRepository } from './join-token-repository.js';
import { PatchRepository } from './patch-repository.js';
import { SavepointLost, type StoreBackend } from './repositories.js';
import { RolloutRepository } from './rollout-repository.js';
import { StateCounts } from './state-counts.js';
import { StatementRepository } from './statement-repository.js';

/**
 * The default store: one SQLite file, one connection (better-sqlite3 is synchronous, so every
 * repository call is done by the time its promise is). A transaction is IMMEDIATE: it takes the
 * write lock at BEGIN, so it never fails half-way for want of it.
 */
export class SqliteBackend implements StoreBackend {
  readonly kind = 'sqlite' as const;
  readonly agents: AgentRepository;
  readonly joinTokens: JoinTokenRepository;
  readonly patches: PatchRepository;
  readonly rollouts: RolloutRepository;
  readonly hostRuns: HostRunRepository;
  readonly inventory: InventoryRepository;
  readonly statements: StatementRepository;
  readonly analyses: AnalysisRepository;
  readonly events: EventRepository;
  readonly stateCounts: StateCounts;

  constructor(readonly db: Db) {
    this.agents = new AgentRepository(db);
    this.joinTokens = new JoinTokenRepository(db);
    this.patches = new PatchRepository(db);
    this.rollouts = new RolloutRepository(db);
    this.hostRuns = new HostRunRepository(db);
    this.inventory = new InventoryRepository(db);
    this.statements = new StatementRepository(db);
    this.analyses = new AnalysisRepository(db);
    this.events = new EventRepository(db);
    this.stateCounts = new StateCounts(db);
  }

  async inTransaction<T>(fn: () => Promise<T>): Promise<T> {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = await fn();
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  async inSavepoint<T>(fn: () => Promise<T>): Promise<T> {
    this.db.exec('SAVEPOINT attempt');
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      try {
        this.db.exec('ROLLBACK TO attempt');
        this.db.exec('RELEASE attempt');
      } catch (rollbackError) {
        throw new SavepointLost(rollbackError);
      }
      throw err;
    }
    try {
      this.db.exec('RELEASE attempt');
    } catch (releaseError) {
      // Not released, its writes would commit with the transaction while the caller is told it failed.
      throw new SavepointLost(releaseError);
    }
    return result;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
