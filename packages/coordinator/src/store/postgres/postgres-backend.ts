import { SavepointLost, type StoreBackend } from '../repositories.js';
import { PostgresAgentRepository } from './postgres-agent-repository.js';
import { PostgresAnalysisRepository } from './postgres-analysis-repository.js';
import { PostgresEventRepository } from './postgres-event-repository.js';
import type { PostgresExecutor } from './postgres-executor.js';
import { PostgresHostRunRepository } from './postgres-host-run-repository.js';
import { PostgresInventoryRepository } from './postgres-inventory-repository.js';
import { PostgresJoinTokenRepository } from './postgres-join-token-repository.js';
import { PostgresPatchRepository } from './postgres-patch-repository.js';
import { PostgresRolloutRepository } from './postgres-rollout-repository.js';
import { PostgresStateCounts } from './postgres-state-counts.js';
import { PostgresStatementRepository } from './postgres-statement-repository.js';

/**
 * The store on PostgreSQL: the same repositories as `SqliteBackend`, each over one executor, so
 * that inside `inTransaction` every one of them writes on the transaction's connection. The
 * schema must already be migrated (`Store.openPostgres` does it first, under the migration lock).
 * Transactions are READ COMMITTED, PostgreSQL's default: the `Store` runs one at a time, so within
 * one coordinator none sees another half-done; across the coordinators of a group, the engine's
 * steps hold one advisory lock (group/engine-step-lock.ts), so theirs do not interleave either.
 */
export class PostgresBackend implements StoreBackend {
  readonly kind = 'postgres' as const;
  readonly agents: PostgresAgentRepository;
  readonly joinTokens: PostgresJoinTokenRepository;
  readonly patches: PostgresPatchRepository;
  readonly rollouts: PostgresRolloutRepository;
  readonly hostRuns: PostgresHostRunRepository;
  readonly inventory: PostgresInventoryRepository;
  readonly statements: PostgresStatementRepository;
  readonly analyses: PostgresAnalysisRepository;
  readonly events: PostgresEventRepository;
  readonly stateCounts: PostgresStateCounts;
  private closing: Promise<void> | undefined;

  constructor(readonly executor: PostgresExecutor) {
    this.agents = new PostgresAgentRepository(executor);
    this.joinTokens = new PostgresJoinTokenRepository(executor);
    this.patches = new PostgresPatchRepository(executor);
    this.rollouts = new PostgresRolloutRepository(executor);
    this.hostRuns = new PostgresHostRunRepository(executor);
    this.inventory = new PostgresInventoryRepository(executor);
    this.statements = new PostgresStatementRepository(executor);
    this.analyses = new PostgresAnalysisRepository(executor);
    this.events = new PostgresEventRepository(executor);
    this.stateCounts = new PostgresStateCounts(executor);
  }

  inTransaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.executor.inTransaction(fn);
  }

  /** The executor follows these statements: held writes are marked at the savepoint and put back by its rollback (postgres-executor.ts). */
  async inSavepoint<T>(fn: () => Promise<T>): Promise<T> {
    await this.executor.query('SAVEPOINT attempt');
    let result: T;
    try {
      result = await fn();
      await this.executor.query('RELEASE SAVEPOINT attempt');
    } catch (err) {
      try {
        await this.executor.query('ROLLBACK TO SAVEPOINT attempt');
        await this.executor.query('RELEASE SAVEPOINT attempt');
      } catch (rollbackError) {
        throw new SavepointLost(rollbackError);
      }
      throw err;
    }
    return result;
  }

  /** Idempotent: the pool refuses to be ended twice, and a store may be closed by more than one owner. */
  close(): Promise<void> {
    this.closing ??= this.executor.close();
    return this.closing;
  }
}
