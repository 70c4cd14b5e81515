/** The live health board on its own: what it keeps, what it forgets, and what it says is worth a record. */
import type { HealthCheckResult } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import {
  LIVE_HEALTH_EVENT_INTERVAL_MS,
  LiveHealthBoard,
  MAX_HEALTH_ROWS_PER_ORDER,
} from '../src/engine/live-health.js';
import { type UndoLog, undoAll } from '../src/engine/undo-log.js';

const T = Date.parse('2030-01-07T12:00:00Z');
const poll = (ok: boolean, observed = ok ? 'HTTP 200' : 'HTTP 500', at = T): HealthCheckResult[] => [
  { check: 'web', kind: 'http', ok, observed, at: new Date(at).toISOString() },
];

describe('LiveHealthBoard', () => {
  it('keeps since-when across polls with the same verdict, and restarts it on a change', () => {
    const board = new LiveHealthBoard();
    board.note('o1', 'verifying', poll(false, 'HTTP 500', T), 1, T);
    board.note('o1', 'verifying', poll(false, 'HTTP 500', T + 1000), 2, T + 1000);
    expect(board.of('o1')?.checks[0]).toMatchObject({
      since: new Date(T).toISOString(),
      at: new Date(T + 1000).toISOString(),
    });
    board.note('o1', 'verifying', poll(true, 'HTTP 200', T + 2000), 0, T + 2000);
    expect(board.of('o1')?.checks[0]?.since).toBe(new Date(T + 2000).toISOString());
  });

  it('says a poll is worth a record on the first one, a verdict or phase change, and a new observation once per interval', () => {
    const board = new LiveHealthBoard();
    const recordable = (ok: boolean, observed: string, at: number, phase: 'verifying' | 'baking' = 'verifying') =>
      board.note('o1', phase, poll(ok, observed, at), undefined, at).recordable;
    expect(recordable(false, 'HTTP 500', T)).toBe(true);
    expect(recordable(false, 'HTTP 500', T + 1)).toBe(false);
    expect(recordable(false, 'HTTP 502', T + 2)).toBe(false);
    expect(recordable(false, 'HTTP 503', T + LIVE_HEALTH_EVENT_INTERVAL_MS)).toBe(true);
    expect(recordable(true, 'HTTP 200', T + LIVE_HEALTH_EVENT_INTERVAL_MS + 1)).toBe(true);
    expect(recordable(true, 'HTTP 200', T + LIVE_HEALTH_EVENT_INTERVAL_MS + 2, 'baking')).toBe(true);
  });

  it('puts at most MAX_HEALTH_ROWS_PER_ORDER rows of one order on the record, flip its verdict as it may; the board stays live', () => {
    const board = new LiveHealthBoard();
    let recorded = 0;
    for (let i = 0; i < 3 * MAX_HEALTH_ROWS_PER_ORDER; i++) {
      const ok = i % 2 === 0;
      if (board.note('o1', 'verifying', poll(ok, ok ? 'HTTP 200' : 'HTTP 500', T + i), undefined, T + i).recordable)
        recorded++;
    }
    expect(recorded).toBe(MAX_HEALTH_ROWS_PER_ORDER);
    expect(board.of('o1')?.checks[0]?.observed).toBe('HTTP 500');
    // Another order has a budget of its own.
    expect(board.note('o2', 'verifying', poll(false), undefined, T).recordable).toBe(true);
  });

  it('undoes what a rolled-back transaction noted: the next poll is judged as if the undone one never came', () => {
    const board = new LiveHealthBoard();
    board.note('o1', 'verifying', poll(true, 'HTTP 200', T), undefined, T);
    const undo: UndoLog = [];
    expect(board.note('o1', 'verifying', poll(false, 'HTTP 500', T + 1), undefined, T + 1, undo).recordable).toBe(true);
    board.forget('o1', undo);
    board.note('o2', 'verifying', poll(false), undefined, T + 1, undo);
    undoAll(undo);
    expect(board.of('o1')?.checks[0]?.observed).toBe('HTTP 200');
    expect(board.of('o2')).toBeUndefined();
    expect(board.note('o1', 'verifying', poll(false, 'HTTP 500', T + 2), undefined, T + 2).recordable).toBe(true);
  });

  it('forgets an order on request, and nothing is known of a null order', () => {
    const board = new LiveHealthBoard();
    board.note('o1', 'verifying', poll(false), 1, T);
    expect(board.of(null)).toBeUndefined();
    board.forget('o1');
    expect(board.of('o1')).toBeUndefined();
  });

  it('holds at most 10 000 orders, forgetting the one that reported least recently', () => {
    const board = new LiveHealthBoard();
    for (let i = 0; i < 10_000; i++) board.note(`o${i}`, 'verifying', poll(true), 0, T);
    // o0 reports again: it is now the newest; o1 is the oldest.
    board.note('o0', 'verifying', poll(true), 0, T + 1);
    board.note('o-new', 'verifying', poll(true), 0, T + 2);
    expect(board.of('o0')).toBeDefined();
    expect(board.of('o1')).toBeUndefined();
    expect(board.of('o-new')).toBeDefined();
    expect(board.of('o2')).toBeDefined();
  });
});
