import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Journal } from '../journal.js';

/** Config `journal`: how much the order journal (entries and snapshots) may hold. */
export interface JournalQuota {
  /** Orders kept in the journal, finished or not. */
  maxOrders: number;
  /** Bytes under `<dataDir>/orders`, snapshots included. */
  maxBytes: number;
}

export const DEFAULT_JOURNAL_QUOTA: JournalQuota = { maxOrders: 10_000, maxBytes: 512 * 1024 * 1024 };

/**
 * Why a new order may not be journaled now, or undefined when it may. Checked before the order is
 * journaled: a journal past its quota refuses new orders (they are counted, not kept) until
 * retention prunes acknowledged ones; what it holds is still recovered, reported and revertable.
 */
export async function journalQuotaRefusal(journal: Journal, quota: JournalQuota): Promise<string | undefined> {
  const orders = journal.all().length;
  if (orders >= quota.maxOrders) {
    return `the order journal holds ${orders} orders, its quota (journal.maxOrders) is ${quota.maxOrders}; nothing was changed`;
  }
  const bytes = await bytesUnder(journal.directory);
  if (bytes >= quota.maxBytes) {
    return `the order journal uses ${bytes} bytes, its quota (journal.maxBytes) is ${quota.maxBytes}; nothing was changed`;
  }
  return undefined;
}

/** Apparent size of every file under `dir` (lstat: links are not followed). */
export async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  let names: Dirent[];
  try {
    names = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  for (const entry of names) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await bytesUnder(path);
    else total += (await lstat(path).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
