// @ts-check
// The wire's floor: what one host's exchange costs a server that does nothing but the exchange. A bare
// `ws` server (no TLS, no compression, as the bench's coordinator) sends each of N connected clients one
// order; each client answers with a result, and the server acks it — the fleetpatch rollout's 2
// messages out and 1 in per host (a fast order's progress is coalesced away on the agent), JSON
// parsed and serialized, at about their sizes. The server's CPU per host (user + system, from its own process) is the least any coordinator
// on this machine, this kernel and this WebSocket library can spend per host; the bench prints it
// beside the coordinator's, so "CPU per host" has a yardstick.
//
// `node wire-floor.mjs serve` is the server (a child process, so its CPU is its own); the bench calls
// `measureWireFloor(N)`, which runs the clients in its own process.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';

/** About the sizes of the bench's messages: an order for a small file change, its result and ack. */
const ORDER_PAD = 'o'.repeat(1200);
const RESULT_PAD = 'r'.repeat(300);

if (process.argv[2] === 'serve') serve();

function serve() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  /** @type {WebSocket[]} */
  const sockets = [];
  let done = 0;
  /** @type {NodeJS.CpuUsage | undefined} */
  let cpuAtStart;
  let startedAt = 0;
  wss.on('connection', (socket) => {
    sockets.push(socket);
    socket.on('message', (data) => {
      const message = JSON.parse(String(data));
      if (message.type !== 'order.result') return;
      socket.send(JSON.stringify({ type: 'order.ack', orderId: message.orderId, finishedAt: message.finishedAt }));
      if (++done < sockets.length) return;
      const cpu = process.cpuUsage(cpuAtStart);
      process.send?.({ cpuUs: cpu.user + cpu.system, wallMs: performance.now() - startedAt, hosts: done });
    });
  });
  wss.on('listening', () => {
    const address = /** @type {import('node:net').AddressInfo} */ (wss.address());
    process.send?.({ port: address.port });
  });
  process.on('message', (command) => {
    if (command !== 'go') return;
    cpuAtStart = process.cpuUsage();
    startedAt = performance.now();
    sockets.forEach((socket, i) => {
      socket.send(JSON.stringify({ type: 'order.apply', orderId: `ord_${i}`, change: ORDER_PAD }));
    });
  });
}

/**
 * Connects `hosts` clients to a bare server in a child process and runs one exchange per host.
 * @param {number} hosts
 * @returns {Promise<{ serverCpuUsPerHost: number, clientCpuUsPerHost: number, wallMs: number }>}
 */
export async function measureWireFloor(hosts) {
  const server = fork(fileURLToPath(import.meta.url), ['serve'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const next = () =>
      new Promise((resolve, reject) => {
        server.once('message', resolve);
        server.once('exit', (code) => reject(new Error(`the wire-floor server exited ${code}`)));
      });
    const { port } = /** @type {{ port: number }} */ (await next());
    /** @type {WebSocket[]} */
    const clients = [];
    let acked = 0;
    /** @type {() => void} */
    let allAcked = () => {};
    const everyAck = new Promise((resolve) => {
      allAcked = () => resolve(undefined);
    });
    for (let i = 0; i < hosts; i += 256) {
      const batch = Array.from({ length: Math.min(256, hosts - i) }, () => {
        const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
        client.on('message', (data) => {
          const message = JSON.parse(String(data));
          if (message.type === 'order.ack' && ++acked === hosts) allAcked();
          if (message.type !== 'order.apply') return;
          const finishedAt = new Date().toISOString();
          client.send(
            JSON.stringify({
              type: 'order.result',
              orderId: message.orderId,
              outcome: 'healthy',
              finishedAt,
              pad: RESULT_PAD,
            }),
          );
        });
        clients.push(client);
        return new Promise((resolve, reject) => {
          client.once('open', resolve);
          client.once('error', reject);
        });
      });
      await Promise.all(batch);
    }
    const finished = next();
    // The clients' side of the exchange (receive the order, send the result, receive the ack) is this
    // process's CPU until the last ack is in: the least an agent spends per order on the wire (see
    // durability-floor.mjs for the rest of an agent's floor).
    const clientsAtStart = process.cpuUsage();
    server.send('go');
    const [{ cpuUs, wallMs }] = /** @type {[{ cpuUs: number, wallMs: number }, unknown]} */ (
      await Promise.all([finished, everyAck])
    );
    const clientCpu = process.cpuUsage(clientsAtStart);
    for (const client of clients) client.terminate();
    return {
      serverCpuUsPerHost: cpuUs / hosts,
      clientCpuUsPerHost: (clientCpu.user + clientCpu.system) / hosts,
      wallMs,
    };
  } finally {
    server.kill();
  }
}
