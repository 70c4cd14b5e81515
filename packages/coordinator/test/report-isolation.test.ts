/**
 * Taking a failed batch of agent reports apart (`recordApart`) around the ones the store refuses for
 * their data, and telling such a refusal from an outage (`refusesData`). The engine's side, on real
 * stores, is in `report-refused.test.ts`.
 */
import { describe, expect, it } from 'vitest';
import { recordApart, refusesData } from '../src/engine/report-isolation.js';
import type { AgentReport } from '../src/engine/report-recorder.js';

function results(n: number): AgentReport[] {
  return Array.from({ length: n }, (_, i) => ({
    agentId: `host-${i}`,
    kind: 'result' as const,
    body: { orderId: `order-${i}`, outcome: 'healthy' as const, changed: true, finishedAt: '2026-12-06T00:00:00Z' },
  }));
}

const refusal = () => Object.assign(new Error('CHECK constraint failed'), { code: 'SQLITE_CONSTRAINT_CHECK' });
const busy = () => Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });

/** A store that refuses any transaction holding one of `poison`, and records the rest (in `recorded`). */
function storeRefusing(poison: readonly AgentReport[], outageAfter = Number.POSITIVE_INFINITY) {
  const recorded: AgentReport[] = [];
  let transactions = 0;
  const record = async (reports: readonly AgentReport[]) => {
    transactions++;
    if (transactions > outageAfter) throw busy();
    if (reports.some((r) => poison.includes(r))) throw refusal();
    recorded.push(...reports);
  };
  return { record, recorded, transactions: () => transactions };
}

describe('refusesData', () => {
  it.each([
    'SQLITE_CONSTRAINT',
    'SQLITE_CONSTRAINT_CHECK',
    'SQLITE_CONSTRAINT_TRIGGER',
    'SQLITE_CONSTRAINT_UNIQUE',
    'SQLITE_MISMATCH',
    'SQLITE_TOOBIG',
    'SQLITE_RANGE',
    '22021', // PostgreSQL: invalid byte sequence (a NUL in text)
    '22P02', // invalid text representation
    '23514', // check violation
    '23505', // unique violation
    '54000', // program limit exceeded (a value too large for its index)
  ])('%s is a refusal of the data', (code) => {
    expect(refusesData(Object.assign(new Error(code), { code }))).toBe(true);
  });

  it.each([
    'SQLITE_BUSY',
    'SQLITE_LOCKED',
    'SQLITE_FULL',
    'SQLITE_IOERR_FSYNC',
    'SQLITE_READONLY',
    'SQLITE_CORRUPT',
    '53100', // PostgreSQL: disk full
    '57P01', // admin shutdown
    '08006', // connection failure
    '40001', // serialization failure
    '2200', // not a SQLSTATE: too short
    '220211', // nor this
    '123514', // nor this: a SQLSTATE's five characters are the whole code
    'NOT_SQLITE_CONSTRAINT', // SQLite's codes start the code
    'ECONNRESET',
  ])('%s is not', (code) => {
    expect(refusesData(Object.assign(new Error(code), { code }))).toBe(false);
  });

  it('nor is an error without a code, a code that is not text, or no error at all', () => {
    expect(refusesData(new TypeError('x is undefined'))).toBe(false);
    expect(refusesData(Object.assign(new Error('x'), { code: 23514 }))).toBe(false);
    expect(refusesData(undefined)).toBe(false);
    expect(refusesData(null)).toBe(false);
  });
});

describe('recordApart', () => {
  it('records every report but the one refused, each once and in batch order, in about 2·log2(N) transactions', async () => {
    const batch = results(64);
    const poison = batch[37] as AgentReport;
    const store = storeRefusing([poison]);
    const apart = await recordApart(batch, refusal(), store.record);
    expect(apart.refused.map((r) => r.report)).toEqual([poison]);
    expect(apart.refused[0]?.err).toMatchObject({ code: 'SQLITE_CONSTRAINT_CHECK' });
    expect(apart.unrecorded).toEqual([]);
    expect(apart.outage).toBeUndefined();
    expect(store.recorded).toEqual(batch.filter((r) => r !== poison));
    expect(store.transactions()).toBe(2 * Math.log2(64));
  });

  it('finds two refused reports, wherever they are', async () => {
    const batch = results(10);
    const poison = [batch[0] as AgentReport, batch[9] as AgentReport];
    const store = storeRefusing(poison);
    const apart = await recordApart(batch, refusal(), store.record);
    expect(apart.refused.map((r) => r.report)).toEqual(poison);
    expect(store.recorded).toEqual(batch.slice(1, 9));
  });

  it('a batch of one refused report is that report, with no transaction more', async () => {
    const batch = results(1);
    const store = storeRefusing(batch);
    const apart = await recordApart(batch, refusal(), store.record);
    expect(apart.refused.map((r) => r.report)).toEqual(batch);
    expect(store.transactions()).toBe(0);
  });

  it('an outage is not taken apart: the whole batch is left unrecorded, with its error', async () => {
    const batch = results(8);
    const store = storeRefusing([]);
    const err = busy();
    const apart = await recordApart(batch, err, store.record);
    expect(apart.unrecorded).toEqual(batch);
    expect(apart.outage).toEqual({ err });
    expect(apart.refused).toEqual([]);
    expect(store.transactions()).toBe(0);
  });

  it('an outage met on the way stops it: what is not recorded yet is left unrecorded, in batch order', async () => {
    const batch = results(8);
    const poison = batch[6] as AgentReport;
    // The first half (0–3) is recorded; the second half fails for the poison; its first quarter (4–5)
    // then meets the outage, and the last (6–7) is not tried.
    const store = storeRefusing([poison], 2);
    const apart = await recordApart(batch, refusal(), store.record);
    expect(store.recorded).toEqual(batch.slice(0, 4));
    expect(apart.unrecorded).toEqual(batch.slice(4));
    expect(apart.outage?.err).toMatchObject({ code: 'SQLITE_BUSY' });
    expect(apart.refused).toEqual([]);
    expect(store.transactions()).toBe(3);
  });
});
