import type { Change } from '@fleetpatch/shared';
import type { ApplyEntry, JournalEntry } from '../journal.js';
import { sequenceKeysOf } from '../policy/applied-sequences.js';

/**
 * The later apply order that stands over `entry`'s change, if any: one begun after it on the same
 * file or on one of the same packages, that carries its own change or may (it is applying, or
 * restoring its snapshot; one still at its preconditions or baseline has changed nothing yet).
 * A superseded order is not the host's present state any more. Its health checks describe a
 * configuration that is gone, and its snapshot is older than what is there now, so it never bakes
 * and never reverts itself: done, that would put back content nobody asked for over a newer change
 * (signed, perhaps, and then impossible to send again). A later order that failed and restored its
 * snapshot gave the target back to `entry`, and does not count.
 *
 * What an order touches is its file, or the packages it names, and for one that finished the
 * packages it moved (a source change names only its source until the host resolves it).
 */
export function supersedingOrder(entries: Iterable<JournalEntry>, entry: ApplyEntry): ApplyEntry | undefined {
  const touched = new Set(touchedBy(entry));
  const started = startOf(entry);
  for (const other of entries) {
    if (other.kind !== 'apply' || other.orderId === entry.orderId || startOf(other) <= started) continue;
    if (!other.changed && other.phase !== 'applying' && other.phase !== 'reverting') continue;
    if (touchedBy(other).some((key) => touched.has(key))) return other;
  }
  return undefined;
}

/** Where the order began in the journal; an entry from before `startedSeq` existed: its last write. */
function startOf(entry: ApplyEntry): number {
  return entry.startedSeq ?? entry.seq;
}

function touchedBy(entry: ApplyEntry): string[] {
  const change: Change = entry.order.change;
  const moved = entry.result?.packages?.map((move) => `package:${move.name}`) ?? [];
  return [...sequenceKeysOf(change), ...moved];
}
