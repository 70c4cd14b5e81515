import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WIRE_LIMITS } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { Agent } from '../src/agent.js';
import { AgentConfigSchema } from '../src/config.js';
import { collectFacts } from '../src/facts.js';
import { Journal } from '../src/journal.js';
import { sendWelcome, writeTestCredential } from './support/fake-coordinator.js';
import { sampleApplyOrder } from './support/sample-orders.js';

// The agent: 60 unacknowledged results, each near the wire's per-result cap, made every hello
// too big for a frame (closed 1009, never online again). Now the hello fits and the rest follows acks.

let base: string;
let server: WebSocketServer;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'hello-paging-'));
  server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: WIRE_LIMITS.frameBytes });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
});

afterEach(async () => {
  for (const client of server.clients) client.terminate();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(base, { recursive: true, force: true });
});

describe('hello with a large journal', () => {
  it('fits its frame, and every held result arrives as the coordinator acknowledges', async () => {
    const dataDir = join(base, 'data');
    const journal = await Journal.open(dataDir);
    const at = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
    for (let n = 0; n < 60; n++) {
      const entry = await journal.createApply(sampleApplyOrder(`o${n}`), at(n));
      await journal.finish(
        entry,
        {
          orderId: `o${n}`,
          outcome: 'failed',
          changed: false,
          finishedAt: at(n),
          reason: 'r'.repeat(WIRE_LIMITS.reasonChars),
          health: Array.from({ length: 150 }, () => ({
            check: 'c',
            kind: 'file',
            ok: false,
            observed: 'x'.repeat(WIRE_LIMITS.observedChars),
            at: at(n),
          })),
        },
        false,
      );
    }
    await writeTestCredential(dataDir);
    const reported = new Set<string>();
    let helloBytes = 0;
    const closes: number[] = [];
    server.on('connection', (socket) => {
      socket.on('close', (code) => closes.push(code));
      const ack = (orderId: string, finishedAt: string) =>
        socket.send(JSON.stringify({ type: 'order.ack', orderId, finishedAt }));
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.type === 'hello') {
          helloBytes = data.toString().length;
          sendWelcome(socket);
          for (const report of frame.orders as { orderId: string; result?: { finishedAt: string } }[]) {
            reported.add(report.orderId);
            if (report.result) ack(report.orderId, report.result.finishedAt);
          }
        } else if (frame.type === 'order.result') {
          reported.add(frame.orderId);
          ack(frame.orderId, frame.finishedAt);
        }
      });
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    });
    const config = AgentConfigSchema.parse({
      coordinatorUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
      allowInsecure: true,
      dataDir,
      rootDir: base,
    });
    const agent = new Agent({ config, log: pino({ level: 'silent' }), facts: collectFacts() });
    await agent.start();
    await expect.poll(() => reported.size, { timeout: 20_000 }).toBe(60);
    expect(helloBytes).toBeGreaterThan(0);
    expect(helloBytes).toBeLessThan(WIRE_LIMITS.frameBytes);
    expect(closes).toEqual([]);
    await agent.stop();
  });
});
