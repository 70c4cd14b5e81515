import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/api-client.js';
import { ConnectionError } from '../src/cli-errors.js';
import { watchRollout } from '../src/watch-rollout.js';
import { status, summary } from './status-fixture.js';

// What the client makes of answers that are not whole: a body cut off midway (a coordinator that
// restarts while it sends a status of megabytes) is the coordinator unreachable, which a watch rides
// out; an answer that is not JSON says so. A real HTTP server on 127.0.0.1.

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<ApiClient> {
  const server = createServer(handler);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return new ApiClient({ url: `http://127.0.0.1:${port}`, token: 't' });
}

/** Headers promising a large JSON body, a start of it, then the connection cut. */
function cutMidway(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000000' });
  res.write('{"rollout":{"id":"ro_1","state":"runn');
  setTimeout(() => res.socket?.destroy(), 20);
}

describe('ApiClient', () => {
  it('takes a body cut off midway for the coordinator unreachable', async () => {
    const api = await serve((_req, res) => cutMidway(res));
    const read = api.rolloutStatus('ro_1');
    await expect(read).rejects.toBeInstanceOf(ConnectionError);
    await expect(read).rejects.toThrow(/stopped answering GET \/v1\/rollouts\/ro_1 midway/);
  });

  it('says so when an answer is not JSON', async () => {
    const api = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>maintenance</html>');
    });
    await expect(api.rolloutStatus('ro_1')).rejects.toThrow(
      /the answer to GET \/v1\/rollouts\/ro_1 is not JSON \(text\/html\): is http:\/\/127\.0\.0\.1:\d+ a fleetpatch coordinator\?/,
    );
  });

  it('lets a watch ride out status reads cut midway, to the final state', async () => {
    let reads = 0;
    const api = await serve((req, res) => {
      const url = req.url ?? '';
      if (url.endsWith('/events/stream') || url.includes('/events/stream?')) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"not_found","message":"no"}}');
        return;
      }
      if (url.endsWith('/summary')) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(summary({ hostCount: 3 })));
        return;
      }
      reads++;
      // The first status read is whole (a watch gives up at once on a coordinator it never reached);
      // the next two are cut, as by a coordinator restarting; the fourth is whole and final.
      if (reads === 2 || reads === 3) cutMidway(res);
      else {
        const answer = status(reads === 1 ? {} : { state: 'succeeded' });
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      }
    });
    const lost: (string | undefined)[] = [];
    const outcome = await watchRollout(api, 'ro_1', () => {}, {
      fallbackPollMs: 10,
      minIntervalMs: 0,
      timeoutMs: 20_000,
      onConnectionChange: (now) => lost.push(now?.reason),
    });
    expect(outcome).toMatchObject({ kind: 'final', source: { kind: 'status' } });
    expect(reads).toBe(4);
    expect(lost[0]).toMatch(/stopped answering GET \/v1\/rollouts\/ro_1 midway/);
    expect(lost.at(-1)).toBeUndefined();
  });
});
