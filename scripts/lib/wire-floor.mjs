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
// `measureWireFloor(N)`, which runs the clients in its own process. `measureHandshakeFloor(N)` (server:
// `serve-handshake N`) is the same for letting an agent in: see `serveHandshake`.
import { fork } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';

/** About the sizes of the bench's messages: an order for a small file change, its result and ack. */
const ORDER_PAD = 'o'.repeat(1200);
const RESULT_PAD = 'r'.repeat(300);

if (process.argv[2] === 'serve') serve();
if (process.argv[2] === 'serve-handshake') serveHandshake(Number(process.argv[3]));

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
  const server = forkServer(['serve']);
  try {
    const next = () => nextMessage(server, 'wire-floor');
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

/** About the size of a bench agent's hello (facts, labels, no orders), its proof apart. */
const HELLO_PAD = 'h'.repeat(250);
/** Handshakes in flight at once: half the coordinator's default cap on unauthenticated sockets. */
const HANDSHAKES_IN_FLIGHT = 1024;

/**
 * The handshake's floor, beside the wire's: what a bare `ws` server spends to let one agent in the
 * way the coordinator does. The upgrade, a challenge of 32 random bytes, the hello parsed and its
 * ed25519 proof checked on the thread pool, a welcome. No store, no logging, no audit. Its CPU per
 * connection (the thread pool's included) is the yardstick beside the coordinator's in the storm
 * and the network reset, and it is timed from the first upgrade to the last welcome.
 * @param {number} hosts
 */
function serveHandshake(hosts) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  let welcomed = 0;
  /** @type {NodeJS.CpuUsage | undefined} */
  let cpuAtStart;
  let startedAt = 0;
  wss.on('connection', (socket) => {
    if (cpuAtStart === undefined) {
      cpuAtStart = process.cpuUsage();
      startedAt = performance.now();
    }
    const nonce = randomBytes(32).toString('base64url');
    socket.send(JSON.stringify({ type: 'challenge', nonce }));
    socket.once('message', (data) => {
      const hello = JSON.parse(String(data));
      const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: hello.key }, format: 'jwk' });
      verify(null, Buffer.from(nonce), key, Buffer.from(hello.proof, 'base64url'), (err, valid) => {
        if (err !== null || !valid) throw new Error('the handshake floor: a proof did not verify');
        socket.send(JSON.stringify({ type: 'welcome', protocolVersion: 7, heartbeatIntervalMs: 10_000 }));
        if (++welcomed < hosts) return;
        const cpu = process.cpuUsage(cpuAtStart);
        process.send?.({ cpuUs: cpu.user + cpu.system, wallMs: performance.now() - startedAt });
      });
    });
  });
  wss.on('listening', () => {
    const address = /** @type {import('node:net').AddressInfo} */ (wss.address());
    process.send?.({ port: address.port });
  });
}

/**
 * Lets `hosts` clients in to a bare server in a child process, at most HANDSHAKES_IN_FLIGHT at a time,
 * each signing its challenge (one key for all: the server reads it from the hello, where the
 * coordinator reads it from its store).
 * @param {number} hosts
 * @returns {Promise<{ serverCpuUsPerConnection: number, clientCpuUsPerConnection: number, wallMs: number }>}
 */
export async function measureHandshakeFloor(hosts) {
  const server = forkServer(['serve-handshake', String(hosts)]);
  /** @type {WebSocket[]} */
  const clients = [];
  try {
    const next = () => nextMessage(server, 'handshake-floor');
    const { port } = /** @type {{ port: number }} */ (await next());
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const key = publicKey.export({ format: 'jwk' }).x;
    const finished = next();
    const clientsAtStart = process.cpuUsage();
    await new Promise((resolve, reject) => {
      let dialled = 0;
      let welcomed = 0;
      const dial = () => {
        const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
        clients.push(client);
        client.once('error', reject);
        client.on('message', (data) => {
          const message = JSON.parse(String(data));
          if (message.type === 'challenge') {
            const proof = sign(null, Buffer.from(message.nonce), privateKey).toString('base64url');
            client.send(JSON.stringify({ type: 'hello', key, proof, agentVersion: '0.0.0', pad: HELLO_PAD }));
          } else if (++welcomed === hosts) resolve(undefined);
          else if (dialled < hosts) {
            dialled++;
            dial();
          }
        });
      };
      for (; dialled < Math.min(hosts, HANDSHAKES_IN_FLIGHT); dialled++) dial();
    });
    const clientCpu = process.cpuUsage(clientsAtStart);
    const { cpuUs, wallMs } = /** @type {{ cpuUs: number, wallMs: number }} */ (await finished);
    return {
      serverCpuUsPerConnection: cpuUs / hosts,
      clientCpuUsPerConnection: (clientCpu.user + clientCpu.system) / hosts,
      wallMs,
    };
  } finally {
    for (const client of clients) client.terminate();
    server.kill();
  }
}

/**
 * This file as a server in a child process, so that its CPU is its own.
 * @param {string[]} args
 */
function forkServer(args) {
  return fork(fileURLToPath(import.meta.url), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/**
 * The server's next message, or its exit as an error.
 * @param {import('node:child_process').ChildProcess} server
 * @param {string} name
 */
function nextMessage(server, name) {
  return new Promise((resolve, reject) => {
    server.once('message', resolve);
    server.once('exit', (code) => reject(new Error(`the ${name} server exited ${code}`)));
  });
}
