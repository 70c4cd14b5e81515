// @ts-check
// One load-generator process of the bench: runs a slice of the fleet as real `Agent`s (connection,
// protocol, journal, file driver), each confined to its own scratch root. bench.mjs forks as many of
// these as the machine has cores, so the load is not one saturated event loop, and reads each one's
// CPU time from /proc apart from the coordinator's.
//
// Messages from the parent: { type: 'start', ids, coordinatorUrls (one list per id), joinToken, scratch, facts, startConcurrency } and
// { type: 'count' } (answered { type: 'count', connected }); { type: 'stop' } drains every agent and exits.
import { join } from 'node:path';
import { Agent, AgentConfigSchema } from '@fleetpatch/agent';
import { pino } from 'pino';

/** @type {Agent[]} */
const agents = [];
const log = pino({ level: 'silent' });

/** @param {unknown} message */
function send(message) {
  process.send?.(message);
}

process.on('message', async (/** @type {any} */ message) => {
  try {
    if (message.type === 'start') {
      for (const [i, id] of message.ids.entries()) {
        const config = AgentConfigSchema.parse({
          coordinatorUrls: message.coordinatorUrls[i],
          // Plain HTTP on loopback: nothing to encrypt against, and the bench measures the coordinator.
          allowInsecure: true,
          hostId: id,
          joinToken: message.joinToken,
          labels: { role: 'bench' },
          dataDir: join(message.scratch, id, 'data'),
          rootDir: join(message.scratch, id, 'root'),
          logLevel: 'silent',
          file: { allowedRoots: ['/etc'] },
          // Every agent would read this machine's dpkg database; the inventory has its own bench.
          inventory: { enabled: false },
        });
        agents.push(new Agent({ config, log, facts: message.facts }));
      }
      // At most `startConcurrency` starts in flight: a first start enrolls (one HTTP request each), and
      // thousands at once from one address time out at the coordinator (HTTP 408) before it reads them.
      // A turn of the event loop after each start: an enrolled agent's start is file system calls and
      // promises that settle at once, so the starts of a whole slice ran back to back without one. No
      // socket was served meanwhile (3 s at 10,000 agents, none online), then every handshake met the
      // coordinator at once and most were refused 503. Agents on machines of their own answer their
      // handshakes while the others start; with the turn, the bench's do as well.
      const queue = agents.values();
      await Promise.all(
        Array.from({ length: message.startConcurrency }, async () => {
          for (const agent of queue) {
            await agent.start();
            await new Promise((resolve) => setImmediate(resolve));
          }
        }),
      );
      send({ type: 'started' });
    } else if (message.type === 'count') {
      send({ type: 'count', connected: agents.filter((agent) => agent.connected).length });
    } else if (message.type === 'stop') {
      await Promise.allSettled(agents.map((agent) => agent.stop()));
      process.exit(0);
    }
  } catch (err) {
    send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  }
});
// The parent died: nothing to run for.
process.on('disconnect', () => process.exit(0));
