/**
 * The coordinator's listen queue: a fleet that redials at once must find room in the kernel's accept
 * queue, not lose its SYNs to Node's default of 511 and wait out TCP's retransmits. `ss` shows a
 * listening socket's backlog as its Send-Q.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { type CoordinatorProcess, startCoordinator } from '../scripts/lib/local-fleet.mjs';
import { itNeeding, requirement } from './support/requirements.js';

const ss = requirement(
  'ss (iproute2)',
  spawnSync('ss', ['-V']).status === 0 ? { available: true } : { available: false, reason: 'no ss on PATH' },
);

let work: string;
let coordinator: CoordinatorProcess | undefined;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fp-backlog-'));
});

afterAll(async () => {
  await coordinator?.stop();
  await rm(work, { recursive: true, force: true });
});

itNeeding([ss], 'listens with a backlog of 4096 (or the kernel cap, somaxconn, if lower)', async () => {
  coordinator = await startCoordinator({
    dataDir: join(work, 'data'),
    apiTokens: [{ name: 'admin', token: 'a'.repeat(32), role: 'admin' }],
  });
  const port = new URL(coordinator.url).port;
  const listing = spawnSync('ss', ['-Hltn', 'sport', '=', `:${port}`], { encoding: 'utf8' });
  // State, Recv-Q, Send-Q (the backlog), local address, peer address.
  const backlog = Number(listing.stdout.trim().split(/\s+/)[2]);
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
  expect(backlog).toBe(Math.min(4096, somaxconn));
});
