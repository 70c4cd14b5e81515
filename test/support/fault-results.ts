import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Verdict } from './fault-checker.js';

/**
 * One row of the fault suite's results table. Each scenario writes its row to the directory the
 * suite's global setup made (`FLEETPATCH_FAULT_RESULTS`); the global teardown prints them as one table.
 */
export interface ResultRow {
  scenario: string;
  hosts: number;
  faults: string;
  orders: number;
  appliedOnce: number;
  lost: number;
  doubled: number;
  /** From the first fault to the last order at rest and acknowledged. */
  convergeMs: number;
}

export const RESULTS_DIR_ENV = 'FLEETPATCH_FAULT_RESULTS';

export function rowOf(
  scenario: string,
  hosts: number,
  faults: readonly string[],
  verdict: Verdict,
  convergeMs: number,
): ResultRow {
  const { orders, appliedOnce, lost, doubled } = verdict;
  return { scenario, hosts, faults: faults.join(', '), orders, appliedOnce, lost, doubled, convergeMs };
}

/** Writes the row where the table is gathered; outside the suite (no directory given) it only prints it. */
export async function recordRow(row: ResultRow): Promise<void> {
  const dir = process.env[RESULTS_DIR_ENV];
  if (!dir) {
    console.log(formatTable([row]));
    return;
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${row.scenario.replace(/[^a-z0-9]+/gi, '-')}.json`), JSON.stringify(row));
}

export async function readRows(dir: string): Promise<ResultRow[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  const rows = await Promise.all(names.map(async (n) => JSON.parse(await readFile(join(dir, n), 'utf8')) as ResultRow));
  // In scenario order: by the number each scenario's name starts with (10 after 2), then by name
  // (a scenario on SQLite before the same on PostgreSQL).
  return rows.sort(
    (a, b) => Number.parseInt(a.scenario, 10) - Number.parseInt(b.scenario, 10) || a.scenario.localeCompare(b.scenario),
  );
}

/** A Markdown table, so the README can take it as printed. */
export function formatTable(rows: readonly ResultRow[]): string {
  const header = [
    'scenario',
    'hosts',
    'faults injected',
    'orders',
    'applied once',
    'lost',
    'doubled',
    'time to converge',
  ];
  const body = rows.map((r) => [
    r.scenario,
    String(r.hosts),
    r.faults,
    String(r.orders),
    String(r.appliedOnce),
    String(r.lost),
    String(r.doubled),
    `${(r.convergeMs / 1000).toFixed(1)} s`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
