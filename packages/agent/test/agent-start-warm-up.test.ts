/**
 * An agent builds its order frames' parsers (`warmUpProtocol`) when it starts, before it dials: by the
 * time its connection can carry an order, the first one is read by parsers already built. The module
 * is wrapped (`vi.mock`) to count its calls: other test files may have warmed the parsers of a shared
 * process already, so whether they are built says nothing of who built them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { expect, it, onTestFinished, vi } from 'vitest';
import { WebSocketServer } from 'ws';
import { Agent } from '../src/agent.js';
import { AgentConfigSchema } from '../src/config.js';
import { collectFacts } from '../src/facts.js';
import { writeTestCredential } from './support/fake-coordinator.js';

const warmUps = vi.hoisted(() => ({ calls: 0 }));
vi.mock('../src/protocol-warm-up.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/protocol-warm-up.js')>();
  return {
    ...real,
    warmUpProtocol: () => {
      warmUps.calls += 1;
      return real.warmUpProtocol();
    },
  };
});

it('has parsed one frame of each order by the time its connection reaches the coordinator', async () => {
  const base = await mkdtemp(join(tmpdir(), 'agent-warm-up-'));
  onTestFinished(() => rm(base, { recursive: true, force: true }));
  // How many warm-ups the agent had made when each of its connections arrived.
  const warmUpsWhenDialled: number[] = [];
  const coordinator = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  coordinator.on('connection', () => warmUpsWhenDialled.push(warmUps.calls));
  await new Promise<void>((resolve) => coordinator.once('listening', () => resolve()));
  onTestFinished(() => new Promise<void>((resolve) => coordinator.close(() => resolve())));
  await writeTestCredential(join(base, 'data'));
  const config = AgentConfigSchema.parse({
    coordinatorUrl: `ws://127.0.0.1:${(coordinator.address() as AddressInfo).port}`,
    allowInsecure: true,
    dataDir: join(base, 'data'),
    rootDir: base,
    file: { allowedRoots: ['/etc'] },
    inventory: { enabled: false },
  });
  const agent = new Agent({ config, log: pino({ level: 'silent' }), facts: await collectFacts() });
  expect(warmUps.calls).toBe(0);
  await agent.start();
  // Stopped before the coordinator closes (the hooks run last first): its connection goes with it.
  onTestFinished(() => agent.stop());
  await expect.poll(() => warmUpsWhenDialled, { timeout: 10_000 }).toEqual([1]);
});
