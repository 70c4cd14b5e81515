import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OrderApply } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { Agent } from '../src/agent.js';
import { AgentConfigSchema } from '../src/config.js';
import { collectFacts } from '../src/facts.js';
import { sendWelcome, writeTestCredential } from './support/fake-coordinator.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

// One agent against a fake coordinator that only challenges, welcomes and sends one order: enough to stop the
// agent while the order runs and see what each caller of stop() waits for.

let base: string;
let server: WebSocketServer;
/** Every frame the agent sent, parsed. */
let frames: { type: string; orderId?: string; phase?: string; outcome?: string }[];

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'agent-stop-'));
  frames = [];
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
});

afterEach(async () => {
  for (const client of server.clients) client.terminate();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(base, { recursive: true, force: true });
});

function order(): OrderApply {
  return sampleApplyOrder('o1', {
    // Owned by whoever runs the test, so it needs no root.
    change: sampleFileChange({
      content: 'new\n',
      owner: String(process.getuid?.() ?? 0),
      group: String(process.getgid?.() ?? 0),
    }),
    // Healthy only after a streak of two seconds: the order is still verifying when the agent is stopped.
    health: {
      checks: [{ kind: 'file', path: '/etc/x.conf' }],
      intervalSeconds: 0.2,
      minHealthySeconds: 2,
      healthyDeadlineSeconds: 30,
    },
  });
}

describe('Agent.stop', () => {
  it('returns the same drain to every caller: none returns before the running order has reported', async () => {
    const dataDir = join(base, 'data');
    const rootDir = join(base, 'root');
    await mkdir(join(rootDir, 'etc'), { recursive: true });
    await writeFile(join(rootDir, 'etc', 'x.conf'), 'old\n');
    await writeTestCredential(dataDir);
    server.on('connection', (socket) => {
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        frames.push(frame);
        if (frame.type !== 'hello') return;
        sendWelcome(socket);
        socket.send(JSON.stringify(order()));
      });
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    });
    const { port } = server.address() as AddressInfo;
    const config = AgentConfigSchema.parse({
      coordinatorUrl: `ws://127.0.0.1:${port}`,
      allowInsecure: true,
      dataDir,
      rootDir,
      file: { allowedRoots: ['/etc'] },
    });
    const agent = new Agent({ config, log: pino({ level: 'silent' }), facts: await collectFacts() });
    await agent.start();
    await expect
      .poll(() => frames.some((f) => f.type === 'order.progress' && f.phase === 'verifying'), { timeout: 15_000 })
      .toBe(true);

    const first = agent.stop();
    const second = agent.stop();
    expect(second).toBe(first);
    await second;

    expect(frames.filter((f) => f.type === 'order.result')).toMatchObject([{ orderId: 'o1', outcome: 'healthy' }]);
    expect(await readFile(join(rootDir, 'etc', 'x.conf'), 'utf8')).toBe('new\n');
  });
});
