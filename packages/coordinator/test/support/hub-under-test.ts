import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/app.js';
import { type AgentLimits, CoordinatorConfigSchema } from '../../src/config.js';
import { enrollAgent } from './enroll-agent.js';
import { callApi } from './test-coordinator.js';

const ADMIN = 'hub-admin-token-0123456789';

/** A coordinator on 127.0.0.1:0 whose log lines are kept, for tests of the agent socket. */
export interface HubUnderTest {
  app: FastifyInstance;
  port: number;
  /** Every pino line, parsed. */
  logs: Record<string, unknown>[];
  /** Enrolls an agent through the API, with `labels` fixed by its join token; returns its private key. */
  register(id: string, labels?: Record<string, string>): Promise<KeyObject>;
  /** An API call as the admin: the answer's status and parsed body. */
  api(method: 'GET' | 'POST', url: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  /** The audit rows of one type. */
  events(type: string, hostId?: string): Promise<{ hostId: string | null; data: Record<string, unknown> | null }[]>;
  healthz(): Promise<number>;
  logsSaying(message: string): Record<string, unknown>[];
  close(): Promise<void>;
}

export async function startHub(
  limits: Partial<AgentLimits> = {},
  settings: { heartbeatIntervalMs?: number; minApprovals?: number } = {},
): Promise<HubUnderTest> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fleetpatch-hub-'));
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const config = CoordinatorConfigSchema.parse({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    apiTokens: [{ name: 'admin', token: ADMIN, role: 'admin' }],
    agentLimits: limits,
    ...settings,
  });
  const app = await buildApp(config, { logger });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  return {
    app,
    port,
    logs,
    async register(id, labels = {}) {
      return (await enrollAgent(app, ADMIN, id, labels)).privateKey;
    },
    async api(method, url, body) {
      const { status, body: answer } = await callApi(app, method, url, body, ADMIN);
      return { status, body: answer };
    },
    async events(type, hostId) {
      return (await app.fleet.store.allEvents(0, 100_000)).filter(
        (e) => e.type === type && (hostId === undefined || e.hostId === hostId),
      );
    },
    async healthz() {
      return (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
    },
    logsSaying(message) {
      return logs.filter((l) => typeof l.msg === 'string' && l.msg.includes(message));
    },
    async close() {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
