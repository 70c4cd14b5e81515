import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeNeeding } from '../../../test/support/requirements.js';
import { createTestCa, LOOPBACK_SANS, openssl } from '../../../test/support/test-ca.js';
import { Agent } from '../src/agent.js';
import { AgentConfigSchema } from '../src/config.js';
import { collectFacts } from '../src/facts.js';
import { WelcomingCoordinator, writeTestCredential } from './support/fake-coordinator.js';

// A real agent (journal, executor, socket) given the URLs of two coordinators, each a real WebSocket
// server on 127.0.0.1 that welcomes it. The test kills and drops them and waits for the welcomes.

let work: string;
let agent: Agent | undefined;
const coordinators: { close(): Promise<void> }[] = [];
/** Every line the agent logged, parsed. */
let lines: Record<string, unknown>[];

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'agent-failover-'));
  await writeTestCredential(join(work, 'data'));
  await mkdir(join(work, 'root'));
  lines = [];
});

afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  for (const coordinator of coordinators.splice(0)) await coordinator.close();
  await rm(work, { recursive: true, force: true });
});

async function coordinator(tls?: { cert: string; key: string }): Promise<WelcomingCoordinator> {
  const started = await WelcomingCoordinator.start(tls);
  coordinators.push(started);
  return started;
}

/** An agent of `coordinatorUrls`, with a short backoff: the waits here are the rotation's, not a long cap. */
async function startAgent(coordinatorUrls: string[], extra: Record<string, unknown> = {}): Promise<Agent> {
  const config = AgentConfigSchema.parse({
    coordinatorUrls,
    allowInsecure: true,
    dataDir: join(work, 'data'),
    rootDir: join(work, 'root'),
    inventory: { enabled: false },
    backoffBaseMs: 10,
    backoffMaxMs: 200,
    ...extra,
  });
  const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  agent = new Agent({ config, log, facts: await collectFacts() });
  await agent.start();
  return agent;
}

/** The coordinators the agent said it connected to, in order. */
const connectedTo = () => lines.filter((l) => l.msg === 'connected to coordinator').map((l) => l.coordinator);

describe('an agent given several coordinators', () => {
  it('moves to the second when the first dies, and back to the first when the second drops it', async () => {
    const first = await coordinator();
    const second = await coordinator();
    const atFirst = first.nextWelcome();
    await startAgent([first.url, second.url]);
    await atFirst;

    const atSecond = second.nextWelcome();
    await first.close();
    await atSecond;

    await first.reopen();
    const backAtFirst = first.nextWelcome();
    second.dropAgents();
    await backAtFirst;

    expect([first.hellos, second.hellos]).toEqual([2, 1]);
    await expect.poll(connectedTo, { timeout: 5_000 }).toEqual([first.socketUrl, second.socketUrl, first.socketUrl]);
    const dropped = lines.filter((l) => l.msg === 'disconnected from coordinator');
    expect(dropped.map((l) => [l.coordinator, l.next])).toEqual([
      [first.socketUrl, second.socketUrl],
      [second.socketUrl, first.socketUrl],
    ]);
  });

  it('spends one attempt on a dead coordinator at the head of its list', async () => {
    // Accepts the TCP connection and closes it at once: unlike a closed port, it counts the attempts.
    const dead = await deadCoordinator();
    const live = await coordinator();
    const welcomed = live.nextWelcome();
    // A cap of ten minutes: a wait that grew per URL instead of per round would not fit in the test.
    await startAgent([dead.url, live.url], { backoffBaseMs: 10, backoffMaxMs: 600_000 });
    await welcomed;
    await expect.poll(() => agent?.connected, { timeout: 5_000 }).toBe(true);
    expect(dead.attempts).toBe(1);
  });
});

describeNeeding([openssl], 'an agent given several coordinators over TLS', () => {
  it('checks the same CA and pin on every URL: a coordinator with another certificate is refused', async () => {
    const ca = createTestCa(work, 'group-ca');
    const pinned = ca.issue('pinned', { sans: LOOPBACK_SANS });
    const other = ca.issue('other', { sans: LOOPBACK_SANS });
    const read = (certificate: { certFile: string; keyFile: string }) => ({
      cert: readFileSync(certificate.certFile, 'utf8'),
      key: readFileSync(certificate.keyFile, 'utf8'),
    });
    const impostor = await coordinator(read(other));
    const genuine = await coordinator(read(pinned));
    const welcomed = genuine.nextWelcome();
    await startAgent([impostor.url, genuine.url], {
      allowInsecure: false,
      tls: { ca: readFileSync(ca.caFile, 'utf8'), pinSha256: pinned.fingerprint256 },
    });
    await welcomed;

    // Dropped by the genuine one, the agent tries the impostor again (refused again) and comes back.
    const again = genuine.nextWelcome();
    genuine.dropAgents();
    await again;
    expect([impostor.hellos, genuine.hellos]).toEqual([0, 2]);
    expect(lines.find((l) => l.msg === 'coordinator certificate refused: pin mismatch')).toMatchObject({
      expected: pinned.fingerprint256.replace(/:/g, '').toLowerCase(),
      got: other.fingerprint256.replace(/:/g, '').toLowerCase(),
    });
  });
});

/** A TCP listener that hangs up on every connection, and counts them. */
async function deadCoordinator(): Promise<{ url: string; attempts: number; close(): Promise<void> }> {
  const dead = { url: '', attempts: 0, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  const server: Server = createServer((socket) => {
    dead.attempts++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  coordinators.push(dead);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  dead.url = `ws://127.0.0.1:${address.port}`;
  return dead;
}
