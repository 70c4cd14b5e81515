import { type Dirent, lstatSync, readdirSync } from 'node:fs';
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
export function journalQuotaRefusal(usage: JournalUsage, quota: JournalQuota): string | undefined {
  const orders = usage.journal.all().length;
  if (orders >= quota.maxOrders) {
    return `the order journal holds ${orders} orders, its quota (journal.maxOrders) is ${quota.maxOrders}; nothing was changed`;
  }
  const bytes = usage.bytes();
  if (bytes >= quota.maxBytes) {
    return `the order journal uses ${bytes} bytes, its quota (journal.maxBytes) is ${quota.maxBytes}; nothing was changed`;
  }
  return undefined;
}

/**
 * The apparent size of everything under the journal's directory, measured before every order. An
 * order that is finished and acknowledged writes nothing more into its directory until the journal
 * writes its entry again (a revert's `changed: false`, a second result), which moves its `seq`: so
 * its size is remembered under that `seq` and measured again only when it moves. Without that, a
 * journal of thousands of orders was walked file by file for every new one.
 */
export class JournalUsage {
  private readonly settled = new Map<string, { seq: number; bytes: number }>();

  constructor(readonly journal: Journal) {}

  bytes(): number {
    let total = 0;
    const seen = new Set<string>();
    for (const item of listOrEmpty(this.journal.directory)) {
      const path = join(this.journal.directory, item.name);
      if (!item.isDirectory()) {
        total += sizeOf(path);
        continue;
      }
      const entry = this.journal.get(item.name);
      const remembered = this.settled.get(item.name);
      if (entry !== undefined && remembered?.seq === entry.seq) {
        total += remembered.bytes;
        seen.add(item.name);
        continue;
      }
      const bytes = bytesUnder(path);
      total += bytes;
      if (entry?.phase === 'done' && entry.acked) {
        this.settled.set(item.name, { seq: entry.seq, bytes });
        seen.add(item.name);
      }
    }
    // Pruned orders, and orders written to again: forgotten.
    for (const name of this.settled.keys()) if (!seen.has(name)) this.settled.delete(name);
    return total;
  }
}

/** Apparent size of every file under `dir` (lstat: links are not followed); synchronous calls, as the journal's. */
export function bytesUnder(dir: string): number {
  let total = 0;
  for (const item of listOrEmpty(dir)) {
    const path = join(dir, item.name);
    total += item.isDirectory() ? bytesUnder(path) : sizeOf(path);
  }
  return total;
}

function listOrEmpty(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** A file gone since it was listed counts nothing. */
function sizeOf(path: string): number {
  try {
    return lstatSync(path).size;
  } catch {
    return 0;
  }
}
