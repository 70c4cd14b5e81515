import type { Journal } from '../journal.js';

/**
 * Whether the order a result answers ran dpkg: a package change, or the revert of one. Its result is
 * when the agent reads the dpkg database again and reports what moved (the status file's watch would
 * too, but only after its debounce). A file change leaves the database as it was, and reading it
 * again is a dpkg-query run and a parse of every installed package: on a Debian 12 host of 770
 * packages a file order cost 29–30 ms of the agent's CPU and 26–27 ms of dpkg-query's with that read,
 * 6–6.5 ms and none without it. An order the journal does not hold ran nothing (refused, or a dry
 * run, which is never journaled).
 */
export function orderRanDpkg(journal: Pick<Journal, 'get'>, orderId: string): boolean {
  const entry = journal.get(orderId);
  const apply = entry?.kind === 'revert' ? journal.get(entry.revertsOrderId) : entry;
  return apply?.kind === 'apply' && apply.order.change.kind !== 'file';
}
