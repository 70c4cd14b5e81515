/**
 * An order that a later order on the same file replaced is not the host's present state: it never
 * bakes again and never reverts itself. Before, a stolen coordinator's one unsigned `order.watch`
 * naming an old order ran that order's health checks against the newer change; they failed (they
 * check the old configuration), and the agent restored the old order's snapshot — content from
 * before both signed changes — over the newer signed one, which could then not be sent again
 * (`replayed`). A real agent that requires signed orders, against a stand-in coordinator.
 */
import type { HealthCheck, OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { capturingLog } from '../../coordinator/test/support/capturing-log.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import { SignedAgentHarness } from './support/signed-agent-harness.js';
import { applyStatement, signed } from './support/signed-statements.js';

let h: SignedAgentHarness;
const { log, lines } = capturingLog();

beforeEach(async () => {
  lines.length = 0;
  h = new SignedAgentHarness();
  // The app as each version configures it: A's endpoint /a stops answering once B (v2) moved it to /b.
  h.route = (path, text) => (path === '/a' && text === 'v2\n' ? 503 : 200);
  await h.start({ log });
});
afterEach(async () => h.stop());

/** A signed order writing `content`, checked at the app's `endpoint`; `bakeSeconds` is the coordinator's (unsigned). */
function order(orderId: string, content: string, endpoint: string, bakeSeconds = 0): OrderApply {
  const check: HealthCheck = {
    kind: 'http',
    url: `${h.appUrl}${endpoint}`,
    expectStatus: { min: 200, max: 299 },
    timeoutMs: 1000,
  };
  return sampleApplyOrder(orderId, {
    change: sampleFileChange({ content, ...h.me }),
    health: { checks: [check], intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 },
    bakeSeconds,
  });
}

/** Sends `apply` signed by both keys at `sequence` and waits for its (healthy) result. */
async function applySigned(apply: OrderApply, sequence: number): Promise<void> {
  h.send(signed(apply, applyStatement(apply, 'web-1', sequence), [h.author, h.approver]));
  await expect.poll(() => h.resultsOf(apply.orderId).length, { timeout: 15_000 }).toBe(1);
  expect(h.resultsOf(apply.orderId)[0]).toMatchObject({ outcome: 'healthy' });
}

const superseded = (orderId: string) =>
  lines.find((l) => l.orderId === orderId && l.supersededBy === 'ord-b' && /superseded this one/.test(l.msg));

it('an unsigned order.watch naming an order a newer signed one replaced is refused: the newer content stays', async () => {
  await applySigned(order('ord-a', 'v1\n', '/a'), 100);
  await applySigned(order('ord-b', 'v2\n', '/b'), 200);
  expect(await h.onDisk()).toBe('v2\n');

  const framesBefore = h.frames.length;
  h.send({ type: 'order.watch', orderId: 'ord-a', seconds: 3600 });
  await expect.poll(() => superseded('ord-a'), { timeout: 5000 }).toBeDefined();
  // No watch began: no baking report, no second result, and the file holds the newest signed content.
  expect(h.frames.slice(framesBefore).filter((f) => f.orderId === 'ord-a')).toEqual([]);
  expect(h.resultsOf('ord-a')).toHaveLength(1);
  expect(await h.onDisk()).toBe('v2\n');

  // The newest order still bakes when asked (a watch of the present state is what a bake is for).
  const beforeWatchOfB = h.frames.length;
  h.send({ type: 'order.watch', orderId: 'ord-b', seconds: 1 });
  await expect
    .poll(() => h.frames.slice(beforeWatchOfB).some((f) => f.type === 'order.progress' && f.orderId === 'ord-b'))
    .toBe(true);
});

it('a bake under way ends when a later order on its file begins, and its failing checks revert nothing', async () => {
  await applySigned(order('ord-a', 'v1\n', '/a', 600), 100);
  // A bakes (its checks pass on v1) while B, newer and signed, replaces the file: A's checks fail from then on.
  await expect
    .poll(() => h.frames.some((f) => f.type === 'order.progress' && f.orderId === 'ord-a' && f.phase === 'verifying'))
    .toBe(true);
  await applySigned(order('ord-b', 'v2\n', '/b'), 200);
  await expect
    .poll(() =>
      lines.some((l) => l.orderId === 'ord-a' && l.supersededBy === 'ord-b' && /bake watch ended/.test(l.msg)),
    )
    .toBe(true);
  expect(h.resultsOf('ord-a')).toHaveLength(1);
  expect(await h.onDisk()).toBe('v2\n');
});
