/**
 * A signed order that finds its file busy (another order still running on it) is answered blocked
 * before its statement's sequence is recorded: sent again once the file is free, it runs. Before,
 * the sequence was recorded first, so the order that never ran could never run (`replayed`).
 */
import type { OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import { SignedAgentHarness } from './support/signed-agent-harness.js';
import { applyStatement, signed } from './support/signed-statements.js';

let h: SignedAgentHarness;
beforeEach(async () => {
  h = new SignedAgentHarness();
  await h.start();
});
afterEach(async () => h.stop());

/** A signed order writing `content`, verifying for `minHealthySeconds` before it says healthy. */
function order(orderId: string, content: string, minHealthySeconds: number): OrderApply {
  return sampleApplyOrder(orderId, {
    change: sampleFileChange({ content, ...h.me }),
    health: {
      checks: [{ kind: 'http', url: `${h.appUrl}/health`, expectStatus: { min: 200, max: 299 }, timeoutMs: 1000 }],
      intervalSeconds: 0.1,
      minHealthySeconds,
      healthyDeadlineSeconds: 10,
    },
  });
}

it('a signed order for a busy file is blocked without using up its sequence, and runs when sent again', async () => {
  const a = order('ord-a', 'v1\n', 1.5);
  h.send(signed(a, applyStatement(a, 'web-1', 100), [h.author, h.approver]));
  // A holds the file while it verifies.
  await expect
    .poll(() => h.frames.some((f) => f.type === 'order.progress' && f.orderId === 'ord-a' && f.phase === 'verifying'))
    .toBe(true);
  const b = order('ord-b', 'v2\n', 0);
  const bSigned = signed(b, applyStatement(b, 'web-1', 200), [h.author, h.approver]);
  h.send(bSigned);
  await expect.poll(() => h.resultsOf('ord-b').length).toBe(1);
  expect(h.resultsOf('ord-b')[0]).toMatchObject({
    outcome: 'failed',
    errorCode: 'blocked',
    reason: expect.stringMatching(/another order for file \/etc\/x.conf is still running/),
  });

  await expect.poll(() => h.resultsOf('ord-a').length, { timeout: 10_000 }).toBe(1);
  expect(h.resultsOf('ord-a')[0]).toMatchObject({ outcome: 'healthy' });
  // The same signed statement, sent again under a new order id once the file is free: it runs.
  h.send({ ...bSigned, orderId: 'ord-b-again' });
  await expect.poll(() => h.resultsOf('ord-b-again').length, { timeout: 10_000 }).toBe(1);
  expect(h.resultsOf('ord-b-again')[0]).toMatchObject({ outcome: 'healthy' });
  expect(await h.onDisk()).toBe('v2\n');
});

it('two signed orders for one file sent together: the one turned away busy is never burned (sent again, it is not replayed)', async () => {
  const a = order('ord-a', 'v1\n', 0.5);
  const b = order('ord-b', 'v2\n', 0);
  const aSigned = signed(a, applyStatement(a, 'web-1', 100), [h.author, h.approver]);
  const bSigned = signed(b, applyStatement(b, 'web-1', 200), [h.author, h.approver]);
  h.send(aSigned);
  h.send(bSigned);
  await expect.poll(() => h.resultsOf('ord-a').length + h.resultsOf('ord-b').length, { timeout: 10_000 }).toBe(2);
  const results = [...h.resultsOf('ord-a'), ...h.resultsOf('ord-b')];
  // Each either ran or was turned away busy before its sequence was recorded.
  for (const result of results)
    expect(result.outcome === 'healthy' || result.errorCode === 'blocked', JSON.stringify(result)).toBe(true);
  for (const blocked of results.filter((r) => r.errorCode === 'blocked')) {
    const again = blocked.orderId === 'ord-a' ? aSigned : bSigned;
    h.send({ ...again, orderId: `${blocked.orderId}-again` });
    await expect.poll(() => h.resultsOf(`${blocked.orderId}-again`).length, { timeout: 10_000 }).toBe(1);
    expect(h.resultsOf(`${blocked.orderId}-again`)[0]?.reason ?? '').not.toMatch(/^replayed/);
  }
});
