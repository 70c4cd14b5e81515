/**
 * What the agent socket puts on the wire per connection, on real sockets: the writes of a handshake,
 * counted on the coordinator's side (each is a system call on both ends and a wake-up of the agent,
 * which a reconnect storm pays once per agent), and the heartbeat's pings, seen by the agents.
 */
import type { KeyObject } from 'node:crypto';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROTOCOL_VERSION } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import {
  clientFrame,
  connectAsAgent,
  OPCODE,
  type RawPeer,
  sampleHello,
} from '../../../test/support/raw-agent-socket.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';

let hub: HubUnderTest;
const peers: RawPeer[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await hub.close();
});

/** Node's hooks under every write a socket makes: one call each, with the chunks it carries. */
type WritingSocket = Socket & {
  _write(chunk: Buffer | string, encoding: BufferEncoding, cb: (err?: Error) => void): void;
  _writev(chunks: { chunk: Buffer | string }[], cb: (err?: Error) => void): void;
};

/** Records, for the next upgrade the coordinator takes, the text of each write its socket makes. */
function recordWritesOfNextUpgrade(hub: HubUnderTest): string[][] {
  const writes: string[][] = [];
  hub.app.server.prependOnceListener('upgrade', (_request, raw: Socket) => {
    const socket = raw as WritingSocket;
    const write = socket._write.bind(socket);
    const writev = socket._writev.bind(socket);
    socket._write = (chunk, encoding, cb) => {
      writes.push([chunk.toString()]);
      write(chunk, encoding, cb);
    };
    socket._writev = (chunks, cb) => {
      writes.push(chunks.map(({ chunk }) => chunk.toString()));
      writev(chunks, cb);
    };
  });
  return writes;
}

describe('the writes of a connection', () => {
  it('sends the 101 answer and the challenge in one write', async () => {
    hub = await startHub();
    const key = await hub.register('web-1');
    const writes = recordWritesOfNextUpgrade(hub);
    const agent = await connectAsAgent(hub.port, 'web-1', key);
    peers.push(agent.peer);
    expect(agent.welcomed).toBe(true);
    const first = (writes[0] ?? []).join('');
    expect(first).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(first).toContain('{"type":"challenge","nonce":"');
    // Then the welcome, in a write of its own: it waits for the agent's signed hello.
    expect(writes.slice(1).map((chunks) => chunks.join(''))).toEqual([expect.stringContaining('"type":"welcome"')]);
  });
});

describe('the heartbeat', () => {
  /** When the peer's pings came, from `since` on (pings before it are the connecting ones' business). */
  const pingsSince = (peer: RawPeer, since: number) =>
    peer.frames.filter((f) => f.opcode === OPCODE.ping && f.at >= since).map((f) => f.at);

  it('pings each live connection once an interval, spread over the interval rather than all at once', async () => {
    hub = await startHub({}, { heartbeatIntervalMs: 1000 });
    const ids = Array.from({ length: 10 }, (_, i) => `beat-${i}`);
    const keys = await Promise.all(ids.map((id) => hub.register(id)));
    const agents = [];
    for (const [i, id] of ids.entries()) agents.push(await connectAsAgent(hub.port, id, keys[i] as KeyObject));
    peers.push(...agents.map((a) => a.peer));
    // From here on every connection is live, each in its own slice of the interval.
    const since = Date.now();
    const times = await Promise.all(
      agents.map(({ peer }) =>
        peer.until(
          'three pings',
          () => (pingsSince(peer, since).length >= 3 ? pingsSince(peer, since) : undefined),
          8000,
        ),
      ),
    );
    // Ten connections in ten slices of 100 ms: their first pings span most of the interval.
    const firsts = times.map((t) => t[0] as number);
    expect(Math.max(...firsts) - Math.min(...firsts)).toBeGreaterThanOrEqual(500);
    // Each is pinged once an interval, no more often: its third ping comes two intervals after its first
    // (less what a busy test process adds to the first ping's reading; twice an interval would be one).
    for (const [first, , third] of times) expect((third as number) - (first as number)).toBeGreaterThanOrEqual(1500);
  });

  it('cuts a connection that answers no ping by its next one, and only that one', async () => {
    const intervalMs = 1000;
    hub = await startHub({}, { heartbeatIntervalMs: intervalMs });
    const [deafKey, liveKey] = [await hub.register('deaf-1'), await hub.register('live-1')];
    const connectedAt = Date.now();
    const deaf = await connectAsAgent(hub.port, 'deaf-1', deafKey, { answerPings: false });
    const live = await connectAsAgent(hub.port, 'live-1', liveKey);
    peers.push(deaf.peer, live.peer);
    await deaf.peer.until('the deaf connection cut', () => (deaf.peer.ended ? true : undefined), 10_000);
    // Pinged within an interval of connecting, cut at its next ping: two intervals (four allowed for a slow runner).
    expect(Date.now() - connectedAt).toBeLessThanOrEqual(4 * intervalMs);
    expect(hub.logsSaying('agent missed its heartbeat')).toHaveLength(1);
    expect(live.peer.ended).toBe(false);
    expect(hub.app.fleet.hub.isOnline('live-1')).toBe(true);
    expect(hub.app.fleet.hub.isOnline('deaf-1')).toBe(false);
  });

  /** A hello of this build's protocol range: 7 and later beat with a ping of the agent's own. */
  const helloOfToday = () => {
    const { protocolVersion: _v1, ...hello } = sampleHello();
    return { ...hello, protocolVersions: { min: 1, max: PROTOCOL_VERSION } };
  };
  const pongs = (peer: RawPeer) => peer.frames.filter((f) => f.opcode === OPCODE.pong).map((f) => f.payload.toString());

  it('does not ping an agent of protocol 7 that keeps pinging: it answers each ping and counts the agent seen', async () => {
    const intervalMs = 600;
    hub = await startHub({}, { heartbeatIntervalMs: intervalMs });
    const agent = await connectAsAgent(hub.port, 'beat-7', await hub.register('beat-7'), { hello: helloOfToday() });
    peers.push(agent.peer);
    expect(agent.welcomed).toBe(true);
    const since = Date.now();
    const seenAtHello = (await hub.app.fleet.store.agents.get('beat-7'))?.lastSeenAt;
    // The agent's beat over four intervals, far more often than its timer would (twice an interval),
    // each ping sent once the last is answered: the hub runs in this process, and a stall of the
    // event loop delays its reading of a ping but not its tick, so the pings leave room for stalls
    // of most of an interval (a ping every half interval failed once, under a loaded run).
    const beats = 40;
    for (let i = 0; i < beats; i++) {
      agent.peer.write(clientFrame(OPCODE.ping, Buffer.from(String(100 + i))));
      await agent.peer.until(`pong ${i}`, () => (pongs(agent.peer).length > i ? true : undefined));
      await sleep(intervalMs / 10);
    }
    expect(pongs(agent.peer)).toEqual(Array.from({ length: beats }, (_, i) => String(100 + i)));
    expect(pingsSince(agent.peer, since)).toEqual([]);
    expect(agent.peer.ended).toBe(false);
    expect(hub.app.fleet.hub.isOnline('beat-7')).toBe(true);
    // Its pings are its heartbeat: last_seen moves on (written in a batch, within a second).
    await expect
      .poll(async () => (await hub.app.fleet.store.agents.get('beat-7'))?.lastSeenAt, { timeout: 5_000, interval: 50 })
      .not.toBe(seenAtHello);
  });

  it('pings an agent of protocol 7 that fell silent, cuts it at the next tick if it does not answer, keeps it if it does', async () => {
    const intervalMs = 300;
    hub = await startHub({}, { heartbeatIntervalMs: intervalMs });
    const hello = helloOfToday();
    const connectedAt = Date.now();
    const deaf = await connectAsAgent(hub.port, 'deaf-7', await hub.register('deaf-7'), { hello, answerPings: false });
    const quiet = await connectAsAgent(hub.port, 'quiet-7', await hub.register('quiet-7'), { hello });
    peers.push(deaf.peer, quiet.peer);
    await deaf.peer.until('the deaf connection cut', () => (deaf.peer.ended ? true : undefined), 10_000);
    // The tick after its hello, a silent interval, the ping, then the cut: three intervals (six allowed
    // for a slow runner), and it was asked first.
    expect(Date.now() - connectedAt).toBeLessThanOrEqual(6 * intervalMs);
    expect(pingsSince(deaf.peer, connectedAt).length).toBeGreaterThanOrEqual(1);
    expect(hub.logsSaying('agent missed its heartbeat')).toHaveLength(1);
    // The quiet one pings nothing of its own but answers: it is asked every other interval and stays.
    await quiet.peer.until(
      'two pings answered',
      () => (pingsSince(quiet.peer, connectedAt).length >= 2 ? true : undefined),
      10_000,
    );
    expect(quiet.peer.ended).toBe(false);
    expect(hub.app.fleet.hub.isOnline('quiet-7')).toBe(true);
    // Each ping of the hub's is a heartbeat sent, in the message metrics (the agents' own are heartbeats received).
    const metrics = (await hub.app.inject({ method: 'GET', url: '/metrics' })).body;
    const sent = /^fleetpatch_websocket_messages_total\{direction="sent",type="heartbeat"\} (\d+)$/m.exec(metrics);
    expect(Number(sent?.[1])).toBeGreaterThanOrEqual(3);
  });
});
