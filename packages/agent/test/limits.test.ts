import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FileChange, type OrderReport, type OrderResultBody, systemClock, WIRE_LIMITS } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Driver } from '../src/drivers/driver.js';
import type { HealthProbe } from '../src/health/health-probe.js';
import { HealthRunner } from '../src/health/health-runner.js';
import { Journal } from '../src/journal.js';
import { OrderExecutor } from '../src/orders/order-executor.js';
import { AgentPolicy } from '../src/policy/agent-policy.js';
import { RefusalCounter } from '../src/policy/refusal-counter.js';
import { fitHelloReports } from '../src/wire-fit.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'limits-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const healthy: HealthProbe = {
  run: async (c) => ({ check: c.kind, kind: c.kind, ok: true, observed: 'fine', at: new Date(0).toISOString() }),
};
const noopDriver: Driver<FileChange> = {
  kind: 'file',
  preflight: async () => ({ outcome: 'would_apply', detail: 'ok' }),
  snapshot: async () => ({}),
  apply: async () => {},
  verify: async () => {},
  restore: async () => {},
  describe: async () => ({}),
  cleanup: async () => {},
} as unknown as Driver<FileChange>;

async function executor(options: { maxOrders?: number; maxBytes?: number; policy?: AgentPolicy }) {
  const results: OrderResultBody[] = [];
  const refusals = await RefusalCounter.open(dir);
  const clock = systemClock;
  const ex = new OrderExecutor({
    journal: await Journal.open(dir),
    drivers: { file: noopDriver },
    health: new HealthRunner(healthy, clock),
    clock,
    log: pino({ level: 'silent' }),
    events: { progress: () => {}, result: (r) => results.push(r) },
    policy: options.policy ?? new AgentPolicy(),
    refusals,
    quota: { maxOrders: options.maxOrders ?? 10_000, maxBytes: options.maxBytes ?? 512 * 1024 * 1024 },
  });
  return { ex, results, refusals };
}

const quick = (id: string) =>
  sampleApplyOrder(id, {
    health: { checks: [], intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 1 },
  });

describe('journal quotas, checked before journaling', () => {
  it('refuses an order past journal.maxOrders with blocked, journals nothing for it, counts it', async () => {
    const { ex, results, refusals } = await executor({ maxOrders: 1 });
    await ex.apply(quick('o1'));
    await ex.apply(quick('o2'));
    expect(results.map((r) => [r.orderId, r.outcome, r.errorCode])).toEqual([
      ['o1', 'healthy', undefined],
      ['o2', 'failed', 'blocked'],
    ]);
    expect(results[1]?.reason).toContain('journal.maxOrders');
    expect(await readdir(join(dir, 'orders'))).toEqual(['o1']);
    expect(refusals.snapshot.byCode).toEqual({ blocked: 1 });
    await ex.stop();
  });

  it('refuses an order past journal.maxBytes', async () => {
    const { ex, results } = await executor({ maxBytes: 200 });
    await ex.apply(quick('o1'));
    await ex.apply(quick('o2'));
    expect(results[1]).toMatchObject({ orderId: 'o2', errorCode: 'blocked' });
    expect(results[1]?.reason).toContain('journal.maxBytes');
    await ex.stop();
  });

  it('counts policy refusals on disk, bounded, and refuses a re-delivered id again', async () => {
    const { ex, results } = await executor({});
    const evil = { ...quick('o1'), change: sampleFileChange({ path: '/etc/sudoers.d/x' }) };
    for (let i = 0; i < 50; i++) await ex.apply(evil);
    expect(results).toHaveLength(50);
    expect(results.every((r) => r.errorCode === 'policy_denied' && r.outcome === 'failed')).toBe(true);
    expect(await readdir(join(dir, 'orders'))).toEqual([]);
    const onDisk = JSON.parse(await readFile(join(dir, 'refusals.json'), 'utf8')) as { byCode: Record<string, number> };
    expect(onDisk.byCode).toEqual({ policy_denied: 50 });
    expect((await RefusalCounter.open(dir)).snapshot.byCode).toEqual({ policy_denied: 50 });
    await ex.stop();
  });
});

describe('hello journal summary', () => {
  const big = (n: number): OrderReport => ({
    orderId: `o${n}`,
    phase: 'done',
    result: {
      orderId: `o${n}`,
      outcome: 'failed',
      changed: false,
      finishedAt: new Date(n * 1000).toISOString(),
      reason: 'r'.repeat(WIRE_LIMITS.reasonChars),
      health: Array.from({ length: 200 }, () => ({
        check: 'c',
        kind: 'file',
        ok: false,
        observed: 'x'.repeat(WIRE_LIMITS.observedChars),
        at: new Date(0).toISOString(),
      })),
    },
  });

  it('always fits a frame: unfinished orders first, then the newest results; the rest is held', () => {
    const reports = [
      ...Array.from({ length: 60 }, (_, i) => big(i)),
      { orderId: 'running', phase: 'applying' as const },
    ];
    const { sent, held } = fitHelloReports(reports);
    expect(Buffer.byteLength(JSON.stringify(sent))).toBeLessThan(WIRE_LIMITS.frameBytes - 256 * 1024);
    expect(sent[0]?.orderId).toBe('running');
    expect(sent[1]?.orderId).toBe('o59');
    expect(sent.length + held.length).toBe(61);
    expect(held.length).toBeGreaterThan(0);
    expect(fitHelloReports(reports.slice(0, 2))).toEqual({ sent: [reports[1], reports[0]], held: [] });
  });
});

describe('revert orders for unknown applies', () => {
  it('are answered revert_failed/not_found and counted, never journaled', async () => {
    const { ex, results, refusals } = await executor({});
    for (let i = 0; i < 20; i++)
      await ex.revert({ type: 'order.revert', orderId: `r${i}`, revertsOrderId: `nope${i}` });
    expect(results).toHaveLength(20);
    expect(results[0]).toMatchObject({ outcome: 'revert_failed', errorCode: 'not_found' });
    expect(await readdir(join(dir, 'orders'))).toEqual([]);
    expect(refusals.snapshot.byCode).toEqual({ not_found: 20 });
    await ex.stop();
  });
});

describe('a policy that cannot be checked', () => {
  it('refuses (fails closed), reports and counts, journals nothing', async () => {
    const broken = new AgentPolicy();
    broken.checkOrder = async () => {
      throw new Error('dpkg-query exploded');
    };
    const { ex, results } = await executor({ policy: broken });
    await ex.apply(quick('o1'));
    expect(results).toMatchObject([{ orderId: 'o1', outcome: 'failed', errorCode: 'internal' }]);
    expect(results[0]?.reason).toContain('dpkg-query exploded');
    expect(await readdir(join(dir, 'orders'))).toEqual([]);
    await ex.stop();
  });
});
