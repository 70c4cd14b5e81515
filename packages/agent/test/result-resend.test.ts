/**
 * A result the coordinator never acknowledged (its store refused that report three times and dropped
 * it, or an ack was lost to a restart) used to wait for the agent's next reconnect; on a quiet
 * connection that was never, and its host run met its deadline meanwhile. Now the agent sends it
 * again on the same connection, less and less often, until it is acknowledged.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { Agent } from '../src/agent.js';
import { AgentConfigSchema } from '../src/config.js';
import { collectFacts } from '../src/facts.js';
import { Journal, readEntryFile } from '../src/journal.js';
import { ResultResend } from '../src/result-resend.js';
import { writeTestCredential } from './support/fake-coordinator.js';
import { sampleApplyOrder } from './support/sample-orders.js';

describe('ResultResend', () => {
  it('is due after the base wait, then after twice as long, up to the cap', () => {
    const resend = new ResultResend(100, 400);
    resend.sentAt('a', 0);
    expect(resend.due(99, 10)).toEqual([]);
    expect(resend.due(100, 10)).toEqual(['a']);
    expect(resend.due(299, 10)).toEqual([]);
    expect(resend.due(300, 10)).toEqual(['a']); // waited 200
    expect(resend.due(699, 10)).toEqual([]);
    expect(resend.due(700, 10)).toEqual(['a']); // waited 400
    expect(resend.due(1099, 10)).toEqual([]);
    expect(resend.due(1100, 10)).toEqual(['a']); // still 400: the cap
  });

  it('gives at most `limit` at once, the longest waiting first, and the rest at the next ask', () => {
    const resend = new ResultResend(100, 1000);
    resend.sentAt('a', 0);
    resend.sentAt('b', 10);
    resend.sentAt('c', 20);
    expect(resend.due(500, 2)).toEqual(['a', 'b']);
    expect(resend.due(500, 2)).toEqual(['c']);
  });

  it('a result sent anew waits the base again; a forgotten or cleared one is never due', () => {
    const resend = new ResultResend(100, 1000);
    resend.sentAt('a', 0);
    expect(resend.due(100, 10)).toEqual(['a']);
    resend.sentAt('a', 150); // a bake failure's second result, say
    expect(resend.due(249, 10)).toEqual([]);
    expect(resend.due(250, 10)).toEqual(['a']);
    resend.sentAt('b', 0);
    resend.forget('a');
    expect(resend.due(10_000, 10)).toEqual(['b']);
    resend.clear();
    expect(resend.due(100_000, 10)).toEqual([]);
  });
});

describe('an agent whose result is not acknowledged', () => {
  let base: string;
  let server: WebSocketServer;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'result-resend-'));
    server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  });

  afterEach(async () => {
    for (const client of server.clients) client.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(base, { recursive: true, force: true });
  });

  it('sends it again on the same connection, less and less often, and no more once it is acknowledged', async () => {
    const dataDir = join(base, 'data');
    const journal = await Journal.open(dataDir);
    const finishedAt = '2026-01-01T00:00:00.000Z';
    const entry = await journal.createApply(sampleApplyOrder('ord-1'), finishedAt);
    await journal.finish(entry, { orderId: 'ord-1', outcome: 'healthy', changed: true, finishedAt }, true);
    await writeTestCredential(dataDir);

    let connections = 0;
    let heartbeats = 0;
    /** When each report of ord-1's result arrived: in the hello, then as order.result frames. */
    const reports: number[] = [];
    let coordinator: WebSocket | undefined;
    server.on('connection', (socket) => {
      connections++;
      coordinator = socket;
      // The agent's heartbeat is a ping (protocol 7), which ws answers with a pong: an agent that hears
      // nothing for two intervals redials.
      socket.on('ping', () => heartbeats++);
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.type === 'hello') {
          // A welcome with a short heartbeat: the agent looks for results due again at each one.
          const welcome = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, agentId: 'web-1' };
          socket.send(JSON.stringify({ ...welcome, heartbeatIntervalMs: 100 }));
          if (frame.orders.some((r: { orderId: string }) => r.orderId === 'ord-1')) reports.push(Date.now());
        }
        // Never acknowledged, as a coordinator whose store dropped the report.
        if (frame.type === 'order.result' && frame.orderId === 'ord-1') reports.push(Date.now());
      });
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    });
    const config = AgentConfigSchema.parse({
      coordinatorUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
      allowInsecure: true,
      dataDir,
      rootDir: base,
      resultResendMs: 300,
    });
    const agent = new Agent({ config, log: pino({ level: 'silent' }), facts: collectFacts() });
    await agent.start();
    try {
      // The hello, then two sends of its own, on the one connection.
      await expect.poll(() => reports.length, { timeout: 10_000, interval: 20 }).toBeGreaterThanOrEqual(3);
      expect(connections).toBe(1);
      const [hello, first, second] = reports as [number, number, number];
      expect(first - hello).toBeGreaterThanOrEqual(300);
      // The second waited twice as long as the first (a heartbeat's lateness either side).
      expect(second - first).toBeGreaterThanOrEqual(600 - 110);

      // Acknowledged: recorded so in the journal, and never sent again, over twice as many heartbeats as
      // the wait before the next try then (1.2 s after the third report) would take.
      coordinator?.send(JSON.stringify({ type: 'order.ack', orderId: 'ord-1', finishedAt }));
      const entryFile = join(dataDir, 'orders', 'ord-1', 'entry.json');
      await expect.poll(async () => readEntryFile(await readFile(entryFile, 'utf8')).acked).toBe(true);
      const sentBefore = reports.length;
      const heartbeatsAtAck = heartbeats;
      await expect.poll(() => heartbeats - heartbeatsAtAck, { timeout: 15_000, interval: 50 }).toBeGreaterThan(24);
      expect(reports.length).toBe(sentBefore);
      expect(connections).toBe(1);
    } finally {
      await agent.stop();
    }
  });
});
