import type { AgentReport } from './report-recorder.js';

/**
 * Whether a store error refuses what a statement holds — one report's data — rather than the store
 * being unable to write at all (busy, full, unreachable, shut down). Only such a refusal takes a
 * failed batch apart: the other reports can be recorded without the one refused, where an outage
 * would refuse them all and is waited out whole.
 *
 * - SQLite (better-sqlite3 puts the extended result code in `code`): a constraint, a type mismatch,
 *   a value too big, a parameter out of range.
 * - PostgreSQL (node-postgres puts the SQLSTATE in `code`): class 22 data exception (an invalid
 *   byte sequence, a number out of range), 23 integrity constraint violation, 54 program limit
 *   exceeded (a value too large for its index).
 *
 * Anything else — a TypeError included — counts as an outage: a report is never set aside for a
 * failure it may not be the cause of.
 */
export function refusesData(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  if (/^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code)) return true;
  return /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}

/** What became of a batch taken apart: see `recordApart`. */
export interface RecordedApart {
  /** Reports the store refused when recorded alone, each with its error. */
  refused: { report: AgentReport; err: unknown }[];
  /** Reports not recorded because the store stopped writing at all on the way; in batch order. */
  unrecorded: AgentReport[];
  /** The error that stopped it, if one did. */
  outage: { err: unknown } | undefined;
}

/**
 * A batch whose transaction failed with `err` is recorded in halves, and each half that fails again
 * for its data in halves of its own, until the reports the store refuses stand alone: with one such
 * report among N, about 2·log2(N) transactions record the rest. The halves go in batch order, so an
 * agent's reports are recorded in the order they came. An error that is not a data refusal (see
 * `refusesData`) stops the search: what is left is returned unrecorded, to be retried whole.
 */
export async function recordApart(
  batch: readonly AgentReport[],
  err: unknown,
  record: (reports: readonly AgentReport[]) => Promise<void>,
): Promise<RecordedApart> {
  const apart: RecordedApart = { refused: [], unrecorded: [], outage: undefined };
  const split = async (reports: readonly AgentReport[], failure: unknown): Promise<void> => {
    if (!refusesData(failure)) {
      apart.outage = { err: failure };
      apart.unrecorded.push(...reports);
      return;
    }
    if (reports.length === 1) {
      apart.refused.push({ report: reports[0] as AgentReport, err: failure });
      return;
    }
    const middle = Math.ceil(reports.length / 2);
    for (const half of [reports.slice(0, middle), reports.slice(middle)]) {
      if (apart.outage !== undefined) {
        apart.unrecorded.push(...half);
        continue;
      }
      try {
        await record(half);
      } catch (halfErr) {
        await split(half, halfErr);
      }
    }
  };
  await split(batch, err);
  return apart;
}
