/**
 * Dry runs are unsigned: a stolen coordinator can send them by the hundred, each naming a large file
 * under the allowed roots for the agent to hash. They used to run all at once on the agent's one
 * event loop, late enough to time out the health checks of an order in its bake, whose host then
 * reverted a signed, healthy change that nobody asked to revert. Now a few run at a time, a few wait,
 * and the rest are answered blocked at once (`PreflightQueue`). A real agent that requires signed
 * orders, against a stand-in coordinator.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import { SignedAgentHarness } from './support/signed-agent-harness.js';
import { applyStatement, signed } from './support/signed-statements.js';

const DRY_RUNS = 60;
let h: SignedAgentHarness;
beforeEach(async () => {
  h = new SignedAgentHarness();
  await h.start();
});
afterEach(async () => h.stop());

it('a flood of dry runs is answered (most of it blocked at once) while a signed order bakes on, healthy', async () => {
  const baking: OrderApply = sampleApplyOrder('ord-a', {
    change: sampleFileChange({ content: 'v1\n', ...h.me }),
    health: {
      checks: [{ kind: 'http', url: `${h.appUrl}/health`, expectStatus: { min: 200, max: 299 }, timeoutMs: 1000 }],
      intervalSeconds: 0.2,
      minHealthySeconds: 0,
      healthyDeadlineSeconds: 10,
    },
    bakeSeconds: 600,
  });
  h.send(signed(baking, applyStatement(baking, 'web-1', 100), [h.author, h.approver]));
  await expect.poll(() => h.resultsOf('ord-a').length, { timeout: 15_000 }).toBe(1);
  expect(h.resultsOf('ord-a')[0]).toMatchObject({ outcome: 'healthy' });

  await writeFile(join(h.rootDir, 'etc', 'big.bin'), Buffer.alloc(16 * 1024 * 1024, 7));
  for (let i = 0; i < DRY_RUNS; i++)
    h.send({
      type: 'order.preflight',
      orderId: `pf-${i}`,
      change: sampleFileChange({ path: '/etc/big.bin', content: 'x', ...h.me }),
    });
  const answers = () => h.frames.filter((f) => f.type === 'order.result' && f.orderId?.startsWith('pf-'));
  await expect.poll(() => answers().length, { timeout: 60_000, interval: 50 }).toBe(DRY_RUNS);

  const blocked = answers().filter((f) => f.outcome === 'blocked');
  // The queue takes 2 running and 16 waiting; the frames come in a burst, so most of the rest are turned away.
  expect(blocked.length).toBeGreaterThan(0);
  expect(blocked.length).toBeLessThanOrEqual(DRY_RUNS - 18);
  for (const answer of blocked)
    expect(answer).toMatchObject({
      errorCode: 'blocked',
      reason: expect.stringMatching(/dry runs.*nothing was checked/),
    });
  for (const answer of answers().filter((f) => f.outcome !== 'blocked')) expect(answer.outcome).toBe('would_apply');

  // The bake went on being watched through it, healthy: one result, the change in place.
  const polled = h.frames.length;
  await expect
    .poll(() => h.frames.slice(polled).some((f) => f.type === 'order.progress' && f.orderId === 'ord-a'))
    .toBe(true);
  expect(h.resultsOf('ord-a').map((r) => r.outcome)).toEqual(['healthy']);
  expect(await h.onDisk()).toBe('v1\n');
}, 90_000);
