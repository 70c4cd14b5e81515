import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HealthCheck, OrderApply } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { Agent } from '../src/agent.js';
import { AgentConfigSchema } from '../src/config.js';
import { collectFacts } from '../src/facts.js';
import { sendWelcome, writeTestCredential } from './support/fake-coordinator.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

// A stolen coordinator (here: a plain WebSocketServer that welcomes and orders) against an agent with
// its default policy: what the policy refuses runs nothing, writes nothing, journals nothing.

let base: string;
let server: WebSocketServer;
let frames: { type: string; orderId?: string; outcome?: string; errorCode?: string; reason?: string }[];
let hits: number;
let service: ReturnType<typeof createServer>;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'agent-policy-e2e-'));
  frames = [];
  hits = 0;
  service = createServer((_req, res) => {
    hits++;
    res.writeHead(200).end('internal secret');
  });
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
});

afterEach(async () => {
  for (const client of server.clients) client.terminate();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  service.closeAllConnections();
  await new Promise<void>((resolve) => service.close(() => resolve()));
  await rm(base, { recursive: true, force: true });
});

const me = { owner: String(process.getuid?.() ?? 0), group: String(process.getgid?.() ?? 0) };
const quick = { intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 5 };

describe('agent policy, end to end against a fake coordinator', () => {
  it('refuses before anything runs: nothing written, no check run, nothing journaled, the refusal counted', async () => {
    const dataDir = join(base, 'data');
    const rootDir = join(base, 'root');
    await mkdir(join(rootDir, 'etc', 'sudoers.d'), { recursive: true });
    await writeFile(join(rootDir, 'etc', 'x.conf'), 'old\n');
    await writeTestCredential(dataDir);
    const counted: HealthCheck = {
      kind: 'http',
      url: `http://127.0.0.1:${(service.address() as AddressInfo).port}/`,
      expectStatus: { min: 200, max: 299 },
      bodyContains: 'secret',
      timeoutMs: 1000,
    };
    const sudoers: OrderApply = sampleApplyOrder('sudo-1', {
      change: sampleFileChange({ path: '/etc/sudoers.d/x', content: 'ALL ALL=(ALL) NOPASSWD: ALL\n', ...me }),
      health: { checks: [counted], ...quick },
      failIfUnhealthyBefore: true,
    });
    const ssrf: OrderApply = sampleApplyOrder('ssrf-1', {
      change: sampleFileChange({ content: 'new\n', ...me }),
      health: {
        checks: [
          { kind: 'http', url: 'http://10.255.255.1:8080/', expectStatus: { min: 200, max: 299 }, timeoutMs: 1000 },
        ],
        ...quick,
      },
    });
    const fine: OrderApply = sampleApplyOrder('fine-1', {
      change: sampleFileChange({ content: 'new\n', ...me }),
      health: { checks: [counted], ...quick },
    });
    const send: { current: (order: OrderApply) => void } = { current: () => {} };
    server.on('connection', (socket) => {
      send.current = (order) => socket.send(JSON.stringify(order));
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        frames.push(frame);
        if (frame.type !== 'hello') return;
        sendWelcome(socket);
        send.current(sudoers);
      });
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    });
    const config = AgentConfigSchema.parse({
      coordinatorUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
      allowInsecure: true,
      dataDir,
      rootDir,
    });
    const agent = new Agent({ config, log: pino({ level: 'silent' }), facts: collectFacts() });
    await agent.start();
    const resultOf = (orderId: string) => frames.filter((f) => f.type === 'order.result' && f.orderId === orderId);

    await expect.poll(() => resultOf('sudo-1').length, { timeout: 10_000 }).toBe(1);
    expect(resultOf('sudo-1')[0]).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });
    expect(resultOf('sudo-1')[0]?.reason).toContain('/etc/sudoers.d/**');
    expect(hits).toBe(0);
    expect(await readdir(join(rootDir, 'etc', 'sudoers.d'))).toEqual([]);
    expect(await readdir(join(dataDir, 'orders'))).toEqual([]);
    const refusals = async () =>
      (JSON.parse(await readFile(join(dataDir, 'refusals.json'), 'utf8')) as { byCode: Record<string, number> }).byCode;
    expect(await refusals()).toEqual({ policy_denied: 1 });

    // Delivered again: judged again, refused again, counted again; still nothing journaled.
    send.current(sudoers);
    await expect.poll(() => resultOf('sudo-1').length, { timeout: 10_000 }).toBe(2);
    expect(resultOf('sudo-1')[1]).toMatchObject({ errorCode: 'policy_denied' });
    expect(await refusals()).toEqual({ policy_denied: 2 });

    send.current(ssrf);
    await expect.poll(() => resultOf('ssrf-1').length, { timeout: 10_000 }).toBe(1);
    expect(resultOf('ssrf-1')[0]).toMatchObject({ outcome: 'failed', errorCode: 'policy_denied' });
    expect(resultOf('ssrf-1')[0]?.reason).toContain('health.allowedDestinations');
    expect(await readFile(join(rootDir, 'etc', 'x.conf'), 'utf8')).toBe('old\n');
    expect(await readdir(join(dataDir, 'orders'))).toEqual([]);

    // The same check on an allowed order does run (the counter above counts for real), and no byte of
    // the answer comes back.
    send.current(fine);
    await expect.poll(() => resultOf('fine-1').length, { timeout: 15_000 }).toBe(1);
    expect(resultOf('fine-1')[0]).toMatchObject({ outcome: 'healthy' });
    expect(hits).toBeGreaterThan(0);
    expect(JSON.stringify(frames)).not.toContain('internal secret');
    expect(await readdir(join(dataDir, 'orders'))).toEqual(['fine-1']);
    await agent.stop();
  });
});
