/**
 * What the agent socket puts on the wire per connection, counted on the coordinator's side of a real
 * socket: each write the socket makes is a system call on both ends and a wake-up of the agent, which
 * a reconnect storm pays once per agent.
 */
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectAsAgent, type RawPeer } from '../../../test/support/raw-agent-socket.js';
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
