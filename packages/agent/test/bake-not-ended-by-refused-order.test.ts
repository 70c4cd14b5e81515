/**
 * A later order on the same file ends the earlier order's bake only once it is about to change the
 * host: one refused before that (a drift from its expected prior content, a failed precondition, an
 * unhealthy baseline) changed nothing, and the earlier order's bake goes on watching — and reverts
 * the earlier change when it fails. (`bake-superseded.test.ts`: a later order that does change the
 * file ends it.)
 */
import type { HealthCheck, OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import { SignedAgentHarness } from './support/signed-agent-harness.js';
import { applyStatement, signed } from './support/signed-statements.js';

let h: SignedAgentHarness;
let broken = false;

beforeEach(async () => {
  broken = false;
  h = new SignedAgentHarness();
  h.route = (path) => (path === '/a' && broken ? 503 : 200);
  await h.start();
});
afterEach(async () => h.stop());

function order(orderId: string, content: string, bakeSeconds: number, extra: object = {}): OrderApply {
  const check: HealthCheck = {
    kind: 'http',
    url: `${h.appUrl}/a`,
    expectStatus: { min: 200, max: 299 },
    timeoutMs: 1000,
  };
  return sampleApplyOrder(orderId, {
    change: sampleFileChange({ content, ...h.me, ...extra }),
    health: { checks: [check], intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 },
    bakeSeconds,
  });
}

it('a later order on the same file that fails its precondition (nothing changed) leaves the earlier bake running', async () => {
  const a = order('ord-a', 'v1\n', 600);
  h.send(signed(a, applyStatement(a, 'web-1', 100), [h.author, h.approver]));
  await expect.poll(() => h.resultsOf('ord-a').length, { timeout: 15_000 }).toBe(1);
  expect(h.resultsOf('ord-a')[0]).toMatchObject({ outcome: 'healthy' });

  // B expects a prior content the file does not have: refused, nothing changed.
  const b = order('ord-b', 'v2\n', 0, { expectedPriorSha256: 'f'.repeat(64) });
  h.send(signed(b, applyStatement(b, 'web-1', 200), [h.author, h.approver]));
  await expect.poll(() => h.resultsOf('ord-b').length, { timeout: 15_000 }).toBe(1);
  expect(h.resultsOf('ord-b')[0]).toMatchObject({ outcome: 'failed' });
  expect(await h.onDisk()).toBe('v1\n');

  // A's change now breaks the app during its bake: A's watch must revert it.
  broken = true;
  await expect.poll(() => h.onDisk(), { timeout: 10_000 }).toBe('old\n');
});
