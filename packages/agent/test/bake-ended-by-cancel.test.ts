/**
 * When a rollout succeeds, the coordinator ends its agents' bake watches with `order.cancel` of their
 * apply orders, done by then: on an agent that cancel only ends the order's watch. The host keeps
 * the change, the order keeps its healthy result, and a failure after it reverts nothing. A real
 * agent against a stand-in coordinator; a second order's watch, on another file and slower to fail,
 * is the control that the health did fail while the cancelled watch would still have been polling.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
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
  h.route = () => (broken ? 503 : 200);
  await h.start();
});
afterEach(async () => h.stop());

/** A signed order writing `content` to `path`, watched for ten minutes, failing its bake after `failures` polls in a row. */
function order(orderId: string, path: string, content: string, failures: number): OrderApply {
  const check: HealthCheck = {
    kind: 'http',
    url: `${h.appUrl}/`,
    expectStatus: { min: 200, max: 299 },
    timeoutMs: 1000,
  };
  return sampleApplyOrder(orderId, {
    change: sampleFileChange({ path, content, ...h.me }),
    health: {
      checks: [check],
      intervalSeconds: 0.1,
      minHealthySeconds: 0,
      healthyDeadlineSeconds: 5,
      bakeTolerance: { consecutiveFailures: failures },
    },
    bakeSeconds: 600,
  });
}

const fileText = (path: string) => readFile(join(h.rootDir, path), 'utf8').catch(() => '<absent>');

it('order.cancel of a done, healthy order ends its bake watch: a failure then reverts nothing', async () => {
  // A fails its bake at the first failing poll; B, the control, only at the fourth.
  const a = order('ord-a', '/etc/x.conf', 'v1\n', 1);
  const b = order('ord-b', '/etc/y.conf', 'w1\n', 4);
  for (const [o, sequence] of [
    [a, 100],
    [b, 200],
  ] as const)
    h.send(signed(o, applyStatement(o, 'web-1', sequence), [h.author, h.approver]));
  const answered = () => h.resultsOf('ord-a').length > 0 && h.resultsOf('ord-b').length > 0;
  await expect.poll(answered, { timeout: 15_000 }).toBe(true);
  expect([h.resultsOf('ord-a')[0], h.resultsOf('ord-b')[0]]).toMatchObject([
    { outcome: 'healthy' },
    { outcome: 'healthy' },
  ]);

  // The rollout succeeded: the coordinator ends A's watch. Frames are handled in order, so once the
  // dry run sent after it has answered, the cancel has been handled.
  h.send({ type: 'order.cancel', orderId: 'ord-a' });
  h.send({
    type: 'order.preflight',
    orderId: 'pf-barrier',
    change: sampleFileChange({ path: '/etc/z.conf', ...h.me }),
  });
  await expect.poll(() => h.resultsOf('pf-barrier').length > 0, { timeout: 10_000 }).toBe(true);

  // The app breaks: B's watch, still running, reverts B after four failing polls; A's would have
  // reverted A three polls before.
  broken = true;
  const bFailed = () => h.resultsOf('ord-b').find((r) => r.outcome !== 'healthy');
  await expect.poll(bFailed, { timeout: 15_000 }).toBeDefined();
  expect(bFailed()).toMatchObject({ outcome: 'failed', changed: false, errorCode: 'health_failed' });
  expect(await fileText('etc/y.conf')).toBe('<absent>');
  // (A result is sent again until the coordinator acks it, which this stand-in does not: each says healthy.)
  expect(new Set(h.resultsOf('ord-a').map((r) => `${r.outcome} changed=${String(r.changed)}`))).toEqual(
    new Set(['healthy changed=true']),
  );
  expect(await h.onDisk()).toBe('v1\n');
});
