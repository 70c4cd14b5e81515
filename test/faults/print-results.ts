import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTable, RESULTS_DIR_ENV, readRows } from '../support/fault-results.js';

/**
 * Global setup of the fault suite (vitest.faults.config.ts): a directory where each scenario leaves
 * its row, and at the end one table of them all, printed whether the scenarios passed or not.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetpatch-fault-results-'));
  // Set before the workers start: they inherit it.
  process.env[RESULTS_DIR_ENV] = dir;
  return async () => {
    const rows = await readRows(dir);
    console.log(
      `\nFault suite results (one coordinator on SQLite, unless the scenario says PostgreSQL and how many coordinators):\n\n${formatTable(rows)}\n`,
    );
    await rm(dir, { recursive: true, force: true });
  };
}
