import type { Db } from './database.js';
import type { StateCountsReader } from './repositories.js';

/**
 * How many rollouts and host runs (orders) are in each state, read on each metrics scrape. Both
 * tables are indexed by state, and a scrape every few seconds is one small query each.
 */
export class StateCounts implements StateCountsReader {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      rollouts: db.prepare('SELECT state, count(*) AS count FROM rollouts GROUP BY state'),
      hostRuns: db.prepare('SELECT state, count(*) AS count FROM host_runs GROUP BY state'),
    };
  }

  async rollouts(): Promise<Map<string, number>> {
    return toMap(this.statements.rollouts.all() as StateCountRow[]);
  }

  async hostRuns(): Promise<Map<string, number>> {
    return toMap(this.statements.hostRuns.all() as StateCountRow[]);
  }
}

interface StateCountRow {
  state: string;
  count: number;
}

function toMap(rows: readonly StateCountRow[]): Map<string, number> {
  return new Map(rows.map((row) => [row.state, row.count]));
}
