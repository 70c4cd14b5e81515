import type { AddressInfo } from 'node:net';
import { CloseCode, type CoordinatorMessage, type Hello, PROTOCOL_VERSION } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { type ConnectionOptions, CoordinatorConnection } from '../src/coordinator-connection.js';

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

async function closeServer(): Promise<void> {
  for (const client of server?.clients ?? []) client.terminate();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
}

/** The coordinator side of the one connection the test's fake server holds. */
async function firstSocket(): Promise<WebSocket> {
  await expect.poll(() => server?.clients.size, { timeout: 3_000 }).toBe(1);
  const [socket] = [...(server?.clients ?? [])];
  if (!socket) throw new Error('no connection');
  return socket;
}

afterEach(async () => {
  await connection?.stop();
  await closeServer();
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
      urls: [`ws://127.0.0.1:${port}/v1/agents/connect`],
      agentId: () => 'web-1',
      log: pino({ level: 'silent' }),
      backoffBaseMs: 10,
      backoffMaxMs: 100,
      welcomeTimeoutMs: 200,
      hello: () => HELLO,
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
      urls: [`ws://127.0.0.1:${port}/v1/agents/connect`],
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
      urls: [`ws://127.0.0.1:${port}/v1/agents/connect`],
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
  proof: 'p'.repeat(86),
  agentVersion: 'test',
  labels: {},
  facts: FACTS,
  orders: [],
};

/**
 * A fake coordinator that challenges, then answers the hello with `welcome` in `protocolVersion`
 * followed by `after`; records every frame the agent sends and how each connection ended.
 */
async function fakeCoordinator(
  protocolVersion: number,
  after: Record<string, unknown>[] = [],
  welcome: Record<string, unknown> = {},
) {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server?.once('listening', () => resolve()));
  const received: Record<string, unknown>[] = [];
  const closes: number[] = [];
  server.on('connection', (socket) => {
    socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Record<string, unknown>;
      received.push(frame);
      if (frame.type !== 'hello') return;
      socket.send(
        JSON.stringify({ type: 'welcome', protocolVersion, agentId: 'web-1', heartbeatIntervalMs: 60_000, ...welcome }),
      );
      for (const message of after) socket.send(JSON.stringify(message));
    });
    socket.on('close', (code) => closes.push(code));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}/v1/agents/connect`, received, closes };
}

function logInto(lines: Record<string, unknown>[]) {
  return pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
}

/** Starts `connection` to `url` as web-1 saying HELLO; returns the messages it hands on, as they come. */
function dial(url: string, options: Partial<ConnectionOptions> = {}): CoordinatorMessage[] {
  const handled: CoordinatorMessage[] = [];
  connection = new CoordinatorConnection({
    urls: [url],
    agentId: () => 'web-1',
    log: pino({ level: 'silent' }),
    hello: () => HELLO,
    onMessage: (message) => handled.push(message),
    ...options,
  });
  connection.start(() => 0);
  return handled;
}

describe('the heartbeat', () => {
  /** A coordinator that welcomes in `protocolVersion` with a 100 ms heartbeat; records the agent's pings and frames. */
  async function beatingCoordinator(protocolVersion: number, options: { autoPong?: boolean } = {}) {
    server = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: options.autoPong ?? true });
    await new Promise<void>((resolve) => server?.once('listening', () => resolve()));
    const pings: string[] = [];
    const types: unknown[] = [];
    let connections = 0;
    server.on('connection', (socket) => {
      connections++;
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
      socket.on('ping', (data) => pings.push(data.toString()));
      socket.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as { type?: unknown };
        types.push(frame.type);
        if (frame.type === 'hello')
          socket.send(JSON.stringify({ type: 'welcome', protocolVersion, agentId: 'web-1', heartbeatIntervalMs: 100 }));
      });
    });
    const { port } = server.address() as AddressInfo;
    return { url: `ws://127.0.0.1:${port}/v1/agents/connect`, pings, types, connections: () => connections };
  }

  it('on protocol 7 is a ping carrying the journal position, which the pong answers: no heartbeat message, no ping needed from the coordinator', async () => {
    const fake = await beatingCoordinator(7);
    connection = new CoordinatorConnection({
      urls: [fake.url],
      agentId: () => 'web-1',
      log: pino({ level: 'silent' }),
      hello: () => HELLO,
      onMessage: () => {},
    });
    let position = 41;
    connection.start(() => ++position);
    // Six intervals: three times what the agent waits before it drops a coordinator it does not hear.
    await expect.poll(() => fake.pings.length, { timeout: 5_000, interval: 20 }).toBeGreaterThanOrEqual(6);
    expect(fake.pings.slice(0, 3)).toEqual(['42', '43', '44']);
    expect(fake.types).toEqual(['hello']);
    expect(fake.connections()).toBe(1);
    expect(connection.connected).toBe(true);
  });

  /**
   * An agent on protocol 7 with a 100 ms heartbeat against `beatingCoordinator`, counting its beats;
   * `onMessage` may answer what the coordinator sends.
   */
  function beatingAgent(url: string, onMessage: (message: CoordinatorMessage) => void = () => {}) {
    let beats = 0;
    connection = new CoordinatorConnection({
      urls: [url],
      agentId: () => 'web-1',
      log: pino({ level: 'silent' }),
      hello: () => HELLO,
      onMessage,
      onHeartbeat: () => beats++,
    });
    connection.start(() => 7);
    return { beats: () => beats };
  }

  it('on protocol 7 leaves its ping out after an interval in which a frame went each way, and beats again once they stop', async () => {
    const fake = await beatingCoordinator(7);
    // The coordinator says something every 20 ms and the agent answers each: both ways, every interval.
    const agent = beatingAgent(fake.url, (message) => {
      if (message.type === 'order.ack')
        connection?.send({ type: 'heartbeat', journalSeq: 7, sentAt: new Date().toISOString() });
    });
    await expect.poll(() => connection?.connected, { timeout: 3_000 }).toBe(true);
    const socket = await firstSocket();
    const chatter = setInterval(() => socket.send(JSON.stringify(ORDER_ACK)), 20);
    try {
      await expect.poll(() => agent.beats(), { timeout: 5_000, interval: 20 }).toBeGreaterThanOrEqual(10);
      // Without the rule, one ping per beat: ten at least. The first interval may have had no exchange yet.
      expect(fake.pings.length).toBeLessThanOrEqual(1);
    } finally {
      clearInterval(chatter);
    }
    const quietFrom = fake.pings.length;
    await expect.poll(() => fake.pings.length - quietFrom, { timeout: 3_000, interval: 20 }).toBeGreaterThanOrEqual(3);
    expect(connection?.connected).toBe(true);
  });

  it('on protocol 7 still pings while frames go one way only: the agent speaking, or the coordinator', async () => {
    // The agent speaks every 20 ms and the coordinator never answers but with pongs.
    const speaking = await beatingCoordinator(7);
    beatingAgent(speaking.url);
    await expect.poll(() => connection?.connected, { timeout: 3_000 }).toBe(true);
    const talk = setInterval(() => connection?.send({ type: 'heartbeat', journalSeq: 7, sentAt: '' }), 20);
    try {
      await expect.poll(() => speaking.pings.length, { timeout: 5_000, interval: 20 }).toBeGreaterThanOrEqual(4);
    } finally {
      clearInterval(talk);
    }
    expect(connection?.connected).toBe(true);
    await connection?.stop();
    await closeServer();

    // The coordinator speaks every 20 ms and the agent says nothing.
    const listening = await beatingCoordinator(7);
    beatingAgent(listening.url);
    await expect.poll(() => connection?.connected, { timeout: 3_000 }).toBe(true);
    const socket = await firstSocket();
    const chatter = setInterval(() => socket.send(JSON.stringify(ORDER_ACK)), 20);
    try {
      await expect.poll(() => listening.pings.length, { timeout: 5_000, interval: 20 }).toBeGreaterThanOrEqual(4);
    } finally {
      clearInterval(chatter);
    }
    expect(connection?.connected).toBe(true);
  });

  it('on protocol 6 is the heartbeat message, and the agent pings nothing', async () => {
    const fake = await beatingCoordinator(6, { autoPong: true });
    const handled = dial(fake.url);
    await expect.poll(() => typesOf(handled), { timeout: 3_000 }).toEqual(['welcome']);
    await expect
      .poll(() => fake.types.filter((type) => type === 'heartbeat').length, { timeout: 3_000, interval: 20 })
      .toBeGreaterThanOrEqual(3);
    expect(fake.pings).toEqual([]);
  });

  it('on protocol 7, drops a coordinator whose pongs stop and dials again', async () => {
    const fake = await beatingCoordinator(7, { autoPong: false });
    dial(fake.url);
    await expect.poll(() => fake.connections(), { timeout: 5_000, interval: 20 }).toBeGreaterThanOrEqual(2);
    // Two silent intervals, then a dial after the backoff: at least two pings went unanswered first.
    expect(fake.pings.length).toBeGreaterThanOrEqual(2);
  });
});

const typesOf = (messages: readonly CoordinatorMessage[]) => messages.map((message) => message.type);

const ORDER_ACK = { type: 'order.ack', orderId: 'o-1' };

describe('protocol versions', () => {
  it('offers the range it speaks in hello and speaks the version the coordinator chose', async () => {
    const fake = await fakeCoordinator(2, [ORDER_ACK]);
    const handled = dial(fake.url);
    await expect.poll(() => typesOf(handled), { timeout: 3_000 }).toEqual(['welcome', 'order.ack']);
    expect(fake.received[0]).toMatchObject({ type: 'hello', protocolVersions: { min: 1, max: PROTOCOL_VERSION } });
    expect(fake.received[0]).not.toHaveProperty('protocolVersion');
    expect(connection?.connected).toBe(true);
  });

  it.each([
    [2, false],
    [3, true],
  ])('a coordinator of protocol %i is sent the package inventory: %s', async (version, sent) => {
    const fake = await fakeCoordinator(version);
    dial(fake.url);
    await expect.poll(() => connection?.connected, { timeout: 3_000 }).toBe(true);
    const summary = { type: 'inventory.summary', seq: 1, digest: 'a'.repeat(64), count: 0 } as const;
    expect(connection?.send(summary)).toBe(sent);
    connection?.send({ type: 'heartbeat', journalSeq: 0, sentAt: new Date().toISOString() });
    await expect.poll(() => fake.received.map((m) => m.type), { timeout: 3_000 }).toContain('heartbeat');
    expect(fake.received.some((m) => m.type === 'inventory.summary')).toBe(sent);
  });

  it('with minProtocolVersion 2, refuses a coordinator that welcomes it in protocol 1 (4426) and acts on none of its orders', async () => {
    const fake = await fakeCoordinator(1, [ORDER_ACK]);
    const lines: Record<string, unknown>[] = [];
    const handled = dial(fake.url, { log: logInto(lines), protocolVersions: { min: 2, max: 2 } });
    await expect.poll(() => fake.closes, { timeout: 3_000 }).toEqual([CloseCode.protocolMismatch]);
    expect(fake.received[0]).toMatchObject({ protocolVersions: { min: 2, max: 2 } });
    expect(handled).toEqual([]);
    expect(connection?.connected).toBe(false);
    expect(lines.find((l) => l.protocolVersion === 1)).toMatchObject({
      level: 50,
      accepted: '2',
      msg: expect.stringContaining('does not accept'),
    });
  });

  it('refuses a welcome whose heartbeat interval is over 600,000 ms with 4400 (2^31 would be a 1 ms timer to Node)', async () => {
    const fake = await fakeCoordinator(2, [ORDER_ACK], { heartbeatIntervalMs: 2 ** 31 });
    const lines: Record<string, unknown>[] = [];
    const handled = dial(fake.url, { log: logInto(lines), backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
    await expect.poll(() => fake.closes, { timeout: 3_000 }).toEqual([CloseCode.badFrame]);
    expect(handled).toEqual([]);
    expect(fake.received.map((m) => m.type)).toEqual(['hello']);
    expect(lines.find((l) => l.msg === 'bad frame from coordinator; reconnecting')?.error).toMatch(
      /heartbeatIntervalMs/,
    );
  });

  it('ignores a message type it does not know with one log line, answers unsupported, and stays connected', async () => {
    const fake = await fakeCoordinator(2, [
      { type: 'order.teleport', orderId: 'o-1' },
      { type: 'order.teleport', orderId: 'o-2' },
      ORDER_ACK,
    ]);
    const lines: Record<string, unknown>[] = [];
    const handled = dial(fake.url, { log: logInto(lines) });
    await expect.poll(() => typesOf(handled), { timeout: 3_000 }).toEqual(['welcome', 'order.ack']);
    expect(fake.received.filter((f) => f.type === 'unsupported')).toEqual([
      { type: 'unsupported', inReplyTo: 'order.teleport', reason: 'not in protocol 2' },
      { type: 'unsupported', inReplyTo: 'order.teleport', reason: 'not in protocol 2' },
    ]);
    expect(lines.filter((l) => l.type === 'order.teleport')).toHaveLength(1);
    expect(fake.closes).toEqual([]);
    expect(connection?.connected).toBe(true);
  });

  it('on protocol 1, ignores an unknown message type without answering (protocol 1 has no unsupported)', async () => {
    const fake = await fakeCoordinator(1, [{ type: 'order.teleport' }, ORDER_ACK]);
    const handled = dial(fake.url);
    await expect.poll(() => typesOf(handled), { timeout: 3_000 }).toEqual(['welcome', 'order.ack']);
    expect(fake.received.map((f) => f.type)).toEqual(['hello']);
  });

  it('accepts unknown optional fields from a newer coordinator and drops them', async () => {
    const fake = await fakeCoordinator(2, [{ ...ORDER_ACK, traceId: 'from-the-future' }]);
    const handled = dial(fake.url);
    await expect.poll(() => handled.length, { timeout: 3_000 }).toBe(2);
    expect(handled[1]).toEqual(ORDER_ACK);
  });

  it('acts on no order sent before a welcome, so skipping welcome cannot skip the version check', async () => {
    server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => server?.once('listening', () => resolve()));
    const closes: number[] = [];
    server.on('connection', (socket) => {
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
      socket.once('message', () => socket.send(JSON.stringify(ORDER_ACK)));
      socket.on('close', (code) => closes.push(code));
    });
    const { port } = server.address() as AddressInfo;
    const handled = dial(`ws://127.0.0.1:${port}/v1/agents/connect`, { backoffMaxMs: 60_000 });
    await expect.poll(() => closes, { timeout: 3_000 }).toEqual([CloseCode.badFrame]);
    expect(handled).toEqual([]);
  });
});
