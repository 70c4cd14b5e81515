/**
 * An earlier order's bake that fails while a later order on the same file holds it (between its
 * admission and its snapshot: preconditions, baseline, preflight) does not restore under it: it waits
 * for the file to be free, then judges again — here the later order changed the file, superseding
 * the earlier one, whose bake then ends without a revert. A real agent against a stand-in coordinator.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HealthCheck, OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import { SignedAgentHarness } from './support/signed-agent-harness.js';
import { applyStatement, signed } from './support/signed-statements.js';

let h: SignedAgentHarness;
let broken = false;
let slow: Server;
/** Set while B's slow baseline check is being answered. */
let bInBaseline = false;

beforeEach(async () => {
  broken = false;
  h = new SignedAgentHarness();
  h.route = (path) => (path === '/a' && broken ? 503 : 200);
  await h.start();
  slow = createServer((_req, res) => {
    bInBaseline = true;
    // A's bake fails while B is at its baseline, holding the file's target.
    broken = true;
    setTimeout(() => {
      bInBaseline = false;
      res.writeHead(200).end('ok');
    }, 2500);
  });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
});
afterEach(async () => {
  slow.closeAllConnections();
  await new Promise<void>((resolve) => slow.close(() => resolve()));
  await h.stop();
});

function order(orderId: string, content: string, bakeSeconds: number, check: HealthCheck): OrderApply {
  return sampleApplyOrder(orderId, {
    change: sampleFileChange({ content, ...h.me }),
    health: { checks: [check], intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 10 },
    bakeSeconds,
  });
}

it("an earlier order's bake does not revert the file while a later order on it holds the target", async () => {
  const a = order('ord-a', 'v1\n', 600, {
    kind: 'http',
    url: `${h.appUrl}/a`,
    expectStatus: { min: 200, max: 299 },
    timeoutMs: 1000,
  });
  h.send(signed(a, applyStatement(a, 'web-1', 100), [h.author, h.approver]));
  await expect.poll(() => h.resultsOf('ord-a').length, { timeout: 15_000 }).toBe(1);
  expect(h.resultsOf('ord-a')[0]).toMatchObject({ outcome: 'healthy' });

  const port = (slow.address() as AddressInfo).port;
  const b = order('ord-b', 'v2\n', 0, {
    kind: 'http',
    url: `http://127.0.0.1:${port}/b`,
    expectStatus: { min: 200, max: 299 },
    timeoutMs: 5000,
  });
  h.send(signed(b, applyStatement(b, 'web-1', 200), [h.author, h.approver]));

  // While B holds the file (its baseline), A's bake fails. A must not restore A's snapshot now.
  let aRevertedWhileBHeldTheFile = false;
  const watcher = setInterval(() => {
    if (bInBaseline && h.resultsOf('ord-a').length > 1) aRevertedWhileBHeldTheFile = true;
  }, 10);
  await expect.poll(() => h.resultsOf('ord-b').length, { timeout: 20_000 }).toBe(1);
  clearInterval(watcher);
  expect(aRevertedWhileBHeldTheFile).toBe(false);
  // B changed the file: A, superseded, is not reverted afterwards either.
  expect(h.resultsOf('ord-b')[0]).toMatchObject({ outcome: 'healthy' });
  expect(h.resultsOf('ord-a')).toHaveLength(1);
  expect(await h.onDisk()).toBe('v2\n');
});
