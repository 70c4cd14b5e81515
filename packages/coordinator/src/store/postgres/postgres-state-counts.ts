import type { StateCountsReader } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

interface StateCountRow {
  state: string;
  count: number;
}

/** How many rollouts and host runs are in each state, on PostgreSQL (both tables are indexed by state). */
export class PostgresStateCounts implements StateCountsReader {
  constructor(private readonly db: PostgresExecutor) {}

  async rollouts(): Promise<Map<string, number>> {
    return this.countByState('SELECT state, count(*) AS count FROM rollouts GROUP BY state');
  }

  async hostRuns(): Promise<Map<string, number>> {
    return this.countByState('SELECT state, count(*) AS count FROM host_runs GROUP BY state');
  }

  private async countByState(sql: string): Promise<Map<string, number>> {
    // count(*) is a bigint, which the executor reads as a number.
    return new Map((await this.db.query<StateCountRow>(sql)).map((row) => [row.state, row.count]));
  }
}
