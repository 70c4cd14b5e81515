import type { AddressInfo } from 'node:net';
import type { Hello } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { CoordinatorConnection } from '../src/coordinator-connection.js';

const FACTS = {
  hostname: 'h',
  os: 'linux',
  distro: 'd',
  release: 'r',
  kernel: 'k',
  arch: 'x64',
  cpus: 1,
  memoryBytes: 1,
};

let server: WebSocketServer | undefined;
let connection: CoordinatorConnection | undefined;

afterEach(async () => {
  await connection?.stop();
  for (const client of server?.clients ?? []) client.terminate();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  connection = undefined;
});

describe('CoordinatorConnection', () => {
  it('answers the challenge, gives up on a coordinator that never says welcome, and dials again', async () => {
    server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server?.once('listening', () => resolve()));
    let connections = 0;
    let hellos = 0;
    server.on('connection', (socket) => {
      connections++;
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
      socket.on('message', () => {
        hellos++; // heard, never answered
      });
    });
    const { port } = server.address() as AddressInfo;
    connection = new CoordinatorConnection({
      url: `ws://127.0.0.1:${port}/v1/agents/connect`,
      agentId: () => 'web-1',
      log: pino({ level: 'silent' }),
      backoffBaseMs: 10,
      backoffMaxMs: 100,
      welcomeTimeoutMs: 200,
      hello: () => ({
        type: 'hello',
        protocolVersion: 1,
        proof: 'p'.repeat(86),
        agentVersion: 'test',
        labels: {},
        facts: FACTS,
        orders: [],
      }),
      onMessage: () => undefined,
    });
    connection.start(() => 0);
    await expect.poll(() => connections, { timeout: 3_000, interval: 20 }).toBeGreaterThanOrEqual(2);
    expect(hellos).toBeGreaterThanOrEqual(1);
    expect(connection.connected).toBe(false);
  });

  it.each([
    [4409, 'another connection with this agent credential is live'],
    [4429, 'too many messages'],
    [4503, 'overloaded'],
  ])('treats close code %i as "retry with backoff", logged as what it means', async (code, explanation) => {
    server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server?.once('listening', () => resolve()));
    let connections = 0;
    server.on('connection', (socket) => {
      connections++;
      socket.close(code, 'refused');
    });
    const lines: Record<string, unknown>[] = [];
    const { port } = server.address() as AddressInfo;
    connection = new CoordinatorConnection({
      url: `ws://127.0.0.1:${port}/v1/agents/connect`,
      agentId: () => 'web-1',
      log: pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) }),
      // A cap far above the test's patience: only a backoff retry (not the "needs a human" cap) comes back in time.
      backoffBaseMs: 10,
      backoffMaxMs: 60_000,
      hello: () => HELLO,
      onMessage: () => undefined,
    });
    connection.start(() => 0);
    await expect.poll(() => connections, { timeout: 3_000, interval: 20 }).toBeGreaterThanOrEqual(2);
    const refusal = lines.find((line) => line.code === code);
    expect(refusal).toMatchObject({ level: 40, msg: expect.stringContaining(explanation) });
  });

  it('re-reads its credential after a 4401 before dialling again, and dials with the new identity', async () => {
    server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server?.once('listening', () => resolve()));
    const claimed: string[] = [];
    server.on('connection', (socket, request) => {
      claimed.push(String(request.headers['x-fleetpatch-agent']));
      socket.close(4401, 'agent not enrolled or proof invalid');
    });
    const { port } = server.address() as AddressInfo;
    let identity = 'old-1';
    let rereads = 0;
    connection = new CoordinatorConnection({
      url: `ws://127.0.0.1:${port}/v1/agents/connect`,
      agentId: () => identity,
      log: pino({ level: 'silent' }),
      backoffBaseMs: 10,
      backoffMaxMs: 20,
      hello: () => HELLO,
      onRefused: async () => {
        rereads++;
        identity = 'new-1';
      },
      onMessage: () => undefined,
    });
    connection.start(() => 0);
    await expect.poll(() => claimed.length, { timeout: 3_000, interval: 20 }).toBeGreaterThanOrEqual(2);
    expect(claimed.slice(0, 2)).toEqual(['old-1', 'new-1']);
    expect(rereads).toBeGreaterThanOrEqual(1);
  });
});

const HELLO: Hello = {
  type: 'hello',
  protocolVersion: 1,
  proof: 'p'.repeat(86),
  agentVersion: 'test',
  labels: {},
  facts: FACTS,
  orders: [],
};
