import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import { expect } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { Agent } from '../../src/agent.js';
import { AgentConfigSchema } from '../../src/config.js';
import { collectFacts } from '../../src/facts.js';
import { sendWelcome, writeTestCredential } from './fake-coordinator.js';
import { newSigner, type Signer, trustedKey } from './signed-statements.js';

/** A frame the agent sent, as far as these tests read it. */
export interface AgentFrame {
  type: string;
  orderId?: string;
  outcome?: string;
  changed?: boolean;
  errorCode?: string;
  reason?: string;
  phase?: string;
}

/**
 * A real Agent that requires signed orders (an author and an approver key), in a root of its own
 * holding `/etc/x.conf`, against a stand-in coordinator that sends whatever frames the test says:
 * a stolen coordinator speaking the real protocol. An HTTP app beside it answers each path as
 * `route` says, reading the file as it is on disk, for the orders' health checks.
 */
export class SignedAgentHarness {
  base = '';
  dataDir = '';
  rootDir = '';
  readonly frames: AgentFrame[] = [];
  private socket: WebSocket | undefined;
  private agent: Agent | undefined;
  private server: WebSocketServer | undefined;
  private app: Server | undefined;
  /** What the app answers a path with, given the file's text: set by the test. */
  route: (path: string, fileText: string) => number = () => 200;
  readonly author: Signer = newSigner();
  readonly approver: Signer = newSigner();
  /** The owner and group the file changes name: this process's, so no chown is needed. */
  readonly me = { owner: String(process.getuid?.() ?? 0), group: String(process.getgid?.() ?? 0) };

  async start(options: { config?: Record<string, unknown>; log?: Logger; initial?: string } = {}): Promise<void> {
    this.base = await mkdtemp(join(tmpdir(), 'signed-agent-'));
    this.dataDir = join(this.base, 'data');
    this.rootDir = join(this.base, 'root');
    await mkdir(join(this.rootDir, 'etc'), { recursive: true });
    await writeFile(join(this.rootDir, 'etc', 'x.conf'), options.initial ?? 'old\n');
    await writeTestCredential(this.dataDir, 'web-1');
    const app = createServer((req, res) => {
      let text = '';
      try {
        text = readFileSync(join(this.rootDir, 'etc', 'x.conf'), 'utf8');
      } catch {}
      res.writeHead(this.route(req.url ?? '/', text)).end('ok');
    });
    this.app = app;
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    this.server = server;
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    server.on('connection', (ws) => {
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as AgentFrame;
        this.frames.push(frame);
        if (frame.type !== 'hello') return;
        sendWelcome(ws);
        this.socket = ws;
      });
      ws.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    });
    const config = AgentConfigSchema.parse({
      coordinatorUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
      allowInsecure: true,
      dataDir: this.dataDir,
      rootDir: this.rootDir,
      signing: { trustedKeys: [trustedKey(this.author, ['author']), trustedKey(this.approver, ['approver'])] },
      ...options.config,
    });
    this.agent = new Agent({ config, log: options.log ?? pino({ level: 'silent' }), facts: collectFacts() });
    await this.agent.start();
    await expect.poll(() => this.socket !== undefined, { timeout: 10_000 }).toBe(true);
  }

  async stop(): Promise<void> {
    await this.agent?.stop();
    for (const client of this.server?.clients ?? []) client.terminate();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.app?.closeAllConnections();
    await new Promise<void>((resolve) => (this.app ? this.app.close(() => resolve()) : resolve()));
    await rm(this.base, { recursive: true, force: true });
  }

  get appUrl(): string {
    if (!this.app) throw new Error('the harness is not started');
    return `http://127.0.0.1:${(this.app.address() as AddressInfo).port}`;
  }

  send(frame: object): void {
    if (!this.socket) throw new Error('the agent is not connected');
    this.socket.send(JSON.stringify(frame));
  }

  resultsOf(orderId: string): AgentFrame[] {
    return this.frames.filter((f) => f.type === 'order.result' && f.orderId === orderId);
  }

  /** The file the orders change, as it is on disk now. */
  onDisk(): Promise<string> {
    return readFile(join(this.rootDir, 'etc', 'x.conf'), 'utf8').catch(() => '<absent>');
  }
}
