/**
 * The store's own guarantees: work registered with `afterCommit` runs only once the outermost
 * transaction is on disk, and the queries read after every burst of agent reports go through an
 * index whose cost follows the matching rows, not the size of the rollout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RolloutRequestSchema, storedPatch } from '@fleetpatch/shared';
import type { Statement } from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store } from '../src/store/store.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

let dir: string;
let store: Store;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetpatch-store-'));
  store = await Store.open(join(dir, 'fleetpatch.db'));
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('afterCommit', () => {
  it('runs after the outermost transaction commits, in order, with the change visible', async () => {
    const ran: string[] = [];
    await store.transaction(async () => {
      store.afterCommit(() =>
        ran.push(`first sees ${store.db.prepare('SELECT COUNT(*) FROM agents').pluck().get()} agent(s)`),
      );
      await store.transaction(async () => store.afterCommit(() => ran.push('nested')));
      await store.agents.enroll(
        { id: 'web-1', publicKey: 'A'.repeat(43), labels: {}, mayReplace: false },
        new Date(0).toISOString(),
      );
      expect(ran).toEqual([]);
    });
    expect(ran).toEqual(['first sees 1 agent(s)', 'nested']);
  });

  it('is dropped when the transaction rolls back, and the next transaction starts clean', async () => {
    const ran: string[] = [];
    await expect(
      store.transaction(async () => {
        store.afterCommit(() => ran.push('rolled back'));
        throw new Error('SQLITE_BUSY');
      }),
    ).rejects.toThrow('SQLITE_BUSY');
    await store.transaction(async () => store.afterCommit(() => ran.push('committed')));
    expect(ran).toEqual(['committed']);
  });

  it('runs every callback even when one throws, then reports the first error', async () => {
    const ran: string[] = [];
    await expect(
      store.transaction(async () => {
        store.afterCommit(() => {
          throw new Error('socket gone');
        });
        store.afterCommit(() => ran.push('second'));
      }),
    ).rejects.toThrow('socket gone');
    expect(ran).toEqual(['second']);
  });

  it('refuses to run outside a transaction (there is no commit to wait for)', () => {
    expect(() => store.afterCommit(() => {})).toThrow(/inside Store.transaction/);
  });
});

describe('rollout reads', () => {
  it('parse a rollout request once: every read shares one frozen object, and another text is parsed anew', async () => {
    const request = RolloutRequestSchema.parse({ patchId: 'pat_1', target: { hostIds: ['web-1'] } });
    const other = RolloutRequestSchema.parse({ patchId: 'pat_1', target: { hostIds: ['web-2'] } });
    const at = '2026-01-01T00:00:00.000Z';
    await store.patches.insert(storedPatch(SAMPLE_PATCH_SPEC, { id: 'pat_1', createdBy: 'alice', createdAt: at }));
    await store.rollouts.insert({ id: 'ro_1', patchId: 'pat_1', request, state: 'running', createdBy: 'alice' }, at);
    await store.rollouts.insert(
      { id: 'ro_2', patchId: 'pat_1', request: other, state: 'running', createdBy: 'alice' },
      at,
    );
    const first = (await store.rollouts.get('ro_1'))?.request;
    const again = (await store.rollouts.get('ro_1'))?.request;
    if (first === undefined) throw new Error('ro_1 was not stored');
    expect(again).toBe(first);
    expect(first).toEqual(request);
    // Shared, so nobody may change it under another reader.
    expect(Object.isFrozen(first.target)).toBe(true);
    expect(() => {
      (first.waves as unknown[]).push(1);
    }).toThrow(/not extensible/);
    expect((await store.rollouts.get('ro_2'))?.request).toEqual(other);
  });

  it('parse a patch once: every read shares one frozen object, its content included', async () => {
    const stored = storedPatch(SAMPLE_PATCH_SPEC, {
      id: 'pat_1',
      createdBy: 'alice',
      createdAt: '2026-01-01T00:00:00.000Z',
    });
    await store.patches.insert(stored);
    const first = await store.patches.get('pat_1');
    if (first === undefined) throw new Error('pat_1 was not stored');
    expect(await store.patches.get('pat_1')).toBe(first);
    expect(first).toEqual(stored);
    expect(Object.isFrozen(first.change)).toBe(true);
    expect(await store.patches.get('pat_nowhere')).toBeUndefined();
  });
});

describe('host-run reads', () => {
  it('return every column in its place, whichever read and however the row is found', async () => {
    const at = '2026-01-01T00:00:00.000Z';
    await store.patches.insert(storedPatch(SAMPLE_PATCH_SPEC, { id: 'pat_1', createdBy: 'alice', createdAt: at }));
    const request = RolloutRequestSchema.parse({ patchId: 'pat_1', target: { hostIds: ['web-1'] } });
    await store.rollouts.insert({ id: 'ro_1', patchId: 'pat_1', request, state: 'running', createdBy: 'alice' }, at);
    await store.hostRuns.insertQueued('ro_1', [{ hostId: 'web-1', wave: 2, position: 7 }]);
    // Every column a value of its own (rows are read as arrays by position: a column out of place shows).
    const health = [{ check: 'http', ok: false, observed: '500' }];
    const rehearsal = { outcome: 'restored' };
    const afterChange = { restarted: ['nginx'] };
    const packages = [{ name: 'openssl', from: '3.0.1', to: '3.0.2' }];
    store.db
      .prepare(
        `UPDATE host_runs SET state = 'failed', order_id = 'ord_1', revert_order_id = 'rev_1', changed = 1,
           counted_failure = 1, answered = 1, dispatched_at = 11, delivered_at = 12, finished_at = 13,
           error_code = 'health_failed', reason = 'http check failed', health = ?, rehearsal = ?,
           after_change = ?, packages = ?`,
      )
      .run(JSON.stringify(health), JSON.stringify(rehearsal), JSON.stringify(afterChange), JSON.stringify(packages));
    const expected = {
      rolloutId: 'ro_1',
      hostId: 'web-1',
      wave: 2,
      position: 7,
      state: 'failed',
      orderId: 'ord_1',
      revertOrderId: 'rev_1',
      changed: true,
      countedFailure: true,
      answered: true,
      dispatchedAt: 11,
      deliveredAt: 12,
      finishedAt: 13,
      errorCode: 'health_failed',
      reason: 'http check failed',
      health,
      rehearsal,
      afterChange,
      packages,
    };
    const { hostRuns } = store;
    expect(await hostRuns.get('ro_1', 'web-1')).toStrictEqual(expected);
    expect(await hostRuns.byOrderId('ord_1')).toStrictEqual(expected);
    expect(await hostRuns.byRevertOrderId('rev_1')).toStrictEqual(expected);
    expect(await hostRuns.forRollout('ro_1')).toStrictEqual([expected]);
    expect(await hostRuns.forWave('ro_1', 2)).toStrictEqual([expected]);
    expect(await hostRuns.firstFailures('ro_1', 10)).toStrictEqual([expected]);
    expect(await hostRuns.page('ro_1', { limit: 10 })).toStrictEqual([expected]);
    expect(await hostRuns.inStates('ro_1', ['failed'])).toStrictEqual([expected]);
    expect(await hostRuns.inStatesEverywhere(['failed'])).toStrictEqual([expected]);
    expect(await hostRuns.revertCandidates('ro_1', 10)).toStrictEqual([expected]);
    expect(await hostRuns.recentForHost('web-1', 10)).toStrictEqual([expected]);
    // Through the join with rollouts (the columns named by table).
    expect(await hostRuns.forHostInStates('web-1', ['failed'])).toStrictEqual([expected]);
    store.db.prepare("UPDATE host_runs SET state = 'queued'").run();
    expect(await hostRuns.nextQueued('ro_1', 2, 10)).toStrictEqual([{ ...expected, state: 'queued' }]);
    expect(await hostRuns.get('ro_1', 'web-2')).toBeUndefined();
    expect(await hostRuns.byOrderId('ord_none')).toBeUndefined();
  });
});

describe('query plans', () => {
  const statement = (name: string): Statement =>
    (store.hostRuns as unknown as { statements: Record<string, Statement> }).statements[name] as Statement;
  const plan = (name: string, ...params: unknown[]): string =>
    (store.db.prepare(`EXPLAIN QUERY PLAN ${statement(name).source}`).all(...params) as { detail: string }[])
      .map((row) => row.detail)
      .join(' | ');

  it('failure counts read only the counted failures (partial index host_runs_failures)', () => {
    expect(plan('failures', 'ro_1')).toMatch(/USING COVERING INDEX host_runs_failures \(rollout_id=\?\)/);
    expect(plan('waveFailures', 'ro_1', 0)).toMatch(
      /USING COVERING INDEX host_runs_failures \(rollout_id=\? AND wave=\?\)/,
    );
  });

  it('revert candidates read only changed hosts, already in wave order (partial index host_runs_changed)', () => {
    const detail = plan('revertCandidates', 'ro_1', 10);
    expect(detail).toMatch(/USING INDEX host_runs_changed \(rollout_id=\?\)/);
    expect(detail).not.toMatch(/TEMP B-TREE FOR ORDER BY/);
  });

  it('the revert runner counts hosts in a few states through the state index, not the whole rollout', () => {
    expect(plan('countInStates', JSON.stringify(['reverting']), 'ro_1')).toMatch(
      /USING INDEX host_runs_state \(state=\?\)/,
    );
  });

  it("a rollout's counts by wave and state read its index entries only, never a host row nor another rollout", () => {
    expect(plan('countByWaveAndState', 'ro_1')).toMatch(
      /SEARCH host_runs USING COVERING INDEX host_runs_wave_state\w* \(rollout_id=\?\)/,
    );
  });

  it('the advance loop probes its wave state by state, reading no host row and not the whole wave', () => {
    // `state=?` in the search: one probe per state asked, so the cost follows the hosts in flight.
    expect(plan('countInWave', 'ro_1', 2, JSON.stringify(['dispatched', 'reverting']))).toMatch(
      /SEARCH host_runs USING COVERING INDEX host_runs_wave_state\w* \(rollout_id=\? AND wave=\? AND state=\?\)/,
    );
    expect(plan('anyQueued', 'ro_1', 2)).toMatch(
      /SEARCH host_runs USING COVERING INDEX host_runs_wave_state\w* \(rollout_id=\? AND wave=\? AND state=\?\)/,
    );
  });
});
