/**
 * The agent refuses any patch that would change its own data (the journal that decides what a
 * restore puts back, its credential) or apt's staging directory, whatever its allowed roots say.
 * A real agent whose allowed root holds its data directory, told by a stand-in coordinator to
 * rewrite a journal entry: refused by the policy before anything is journaled or written.
 */
import { mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OrderApply } from '@fleetpatch/shared';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import { SignedAgentHarness } from './support/signed-agent-harness.js';
import { applyStatement, signed } from './support/signed-statements.js';

let h: SignedAgentHarness;
beforeEach(async () => {
  h = new SignedAgentHarness();
  // The host's own root, with the temp directory allowed: the data directory (in it) is inside an
  // allowed root. Nothing is written there: the order is refused before it is journaled.
  await h.start({ config: { rootDir: '/', file: { allowedRoots: [tmpdir()] } } });
});
afterEach(async () => h.stop());

it("refuses a signed file change into the agent's own data directory, under an allowed root", async () => {
  const entry = join(h.dataDir, 'orders', 'ord-evil', 'entry.json');
  const order: OrderApply = sampleApplyOrder('ord-x', {
    change: sampleFileChange({ path: entry, content: '{}\n', ...h.me }),
    health: { checks: [], intervalSeconds: 1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 },
  });
  h.send(signed(order, applyStatement(order, 'web-1', 100), [h.author, h.approver]));
  await expect.poll(() => h.resultsOf('ord-x').length).toBe(1);
  expect(h.resultsOf('ord-x')[0]).toMatchObject({
    outcome: 'failed',
    errorCode: 'policy_denied',
    reason: expect.stringContaining("the agent's own data"),
  });
  expect(await readdir(join(h.dataDir, 'orders'))).toEqual([]);
});

it("refuses a file change into apt's staging directory at its real path, though the configured one goes through a symlink and does not exist yet", async () => {
  await h.stop();
  const real = await mkdtemp(join(tmpdir(), 'staging-real-'));
  const link = `${real}-link`;
  await symlink(real, link);
  h = new SignedAgentHarness();
  try {
    await h.start({
      config: {
        rootDir: '/',
        file: { allowedRoots: [tmpdir()] },
        apt: { allowedPackages: ['fptest'], stagingDir: join(link, 'apt') },
      },
    });
    const order: OrderApply = sampleApplyOrder('ord-y', {
      change: sampleFileChange({ path: join(real, 'apt', 'fptest_9.0_all.deb'), content: 'x\n', ...h.me }),
      health: { checks: [], intervalSeconds: 1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 },
    });
    h.send(signed(order, applyStatement(order, 'web-1', 100), [h.author, h.approver]));
    await expect.poll(() => h.resultsOf('ord-y').length).toBe(1);
    expect(h.resultsOf('ord-y')[0]).toMatchObject({
      errorCode: 'policy_denied',
      reason: expect.stringContaining("the agent's own data"),
    });
  } finally {
    await rm(link, { force: true });
    await rm(real, { recursive: true, force: true });
  }
});
