import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach } from 'vitest';
import { type BuildAppOptions, buildApp } from '../../src/app.js';
import { CoordinatorConfigSchema } from '../../src/config.js';

/** One API token per role, named for a person so the audit trail reads like one. */
export const TOKENS = {
  admin: 'admin-token-0123456789',
  operator: 'operator-token-0123456789',
  approver: 'approver-token-0123456789',
  viewer: 'viewer-token-0123456789',
} as const;

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface TestCoordinator {
  app: FastifyInstance;
  /** Every log line, parsed, in order. */
  logLines: LogLine[];
  dataDir: string;
  /** Closes the app and removes its data directory. */
  close(): Promise<void>;
}

/** A coordinator on its own temp dir with the four role tokens; `config` is laid over the defaults. */
export async function startTestCoordinator(
  config: Record<string, unknown> = {},
  options: Omit<BuildAppOptions, 'logger'> = {},
): Promise<TestCoordinator> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fleetpatch-http-'));
  const logLines: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line)) });
  const app = await buildApp(
    CoordinatorConfigSchema.parse({
      dataDir,
      apiTokens: [
        { name: 'alice', token: TOKENS.admin, role: 'admin' },
        { name: 'olga', token: TOKENS.operator, role: 'operator' },
        { name: 'bob', token: TOKENS.approver, role: 'approver' },
        { name: 'vic', token: TOKENS.viewer, role: 'viewer' },
      ],
      ...config,
    }),
    { logger, ...options },
  );
  return {
    app,
    logLines,
    dataDir,
    close: async () => {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A JSON call with a bearer token; the answer's status and parsed body. */
export async function callApi(
  app: FastifyInstance,
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
  token: string = TOKENS.admin,
) {
  const res = await app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
  });
  return { status: res.statusCode, body: res.json() as unknown, headers: res.headers };
}

/**
 * For a test file whose tests each start coordinators: call once at the top level; the function it
 * returns starts one (as `startTestCoordinator`) and every one started is closed after its test.
 */
export function closedAfterEach(): (...args: Parameters<typeof startTestCoordinator>) => Promise<TestCoordinator> {
  const running: TestCoordinator[] = [];
  afterEach(async () => {
    for (const coordinator of running.splice(0)) await coordinator.close();
  });
  return async (...args) => {
    const started = await startTestCoordinator(...args);
    running.push(started);
    return started;
  };
}
