/**
 * SQLite migration 16 and PostgreSQL migration 6: `webhook.failed` rows written before endpoint
 * labels held `data.url` (the endpoint's origin and path — a Slack URL's path is its credential) on
 * the audit trail every viewer reads. Each store is left at the version before, as a coordinator of
 * then left it, with such rows; the next start migrates it, and no URL path is left. The same
 * expectations on both stores: SQLite first, the reference.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { openDatabase } from '../src/store/database.js';
import { migratePostgres } from '../src/store/postgres/postgres-migrate.js';
import { hashedWebhookLabel } from './support/hashed-webhook-label.js';
import { postgresAtVersion, sqliteAtVersion } from './support/store-at-version.js';

const AT = '2030-01-07T12:00:00.000Z';
const SLACK_SECRET = 'xoxSECRETb7Q2mWv9RkT4pLz';
/** What the notifier of then wrote as `url` for a Slack endpoint: its origin and path, credential and all. */
const SLACK_URL = `https://hooks.slack.com/services/T0001/B0001/${SLACK_SECRET}`;
const MATTERMOST_KEY = 'k3y9mattermost';
const MATTERMOST_URL = `https://chat.example.com/hooks/${MATTERMOST_KEY}`;

/** An audit row as it is inserted. */
interface Row {
  type: string;
  actor: string;
  data: Record<string, unknown>;
}

/** The trail as read back, in seq order. */
type Trail = { seq: number; type: string; actor: string; data: Record<string, unknown> | null }[];

const delivery = { deliveryId: 'd-1', type: 'rollout.created', rolloutId: 'ro_1', attempts: 6 };
const failure = (data: Record<string, unknown>): Row => ({
  type: 'webhook.failed',
  actor: 'system',
  data: { ...data, ...delivery },
});

/** What a coordinator from before the labels left on the trail, and two rows the migration must not touch. */
const OLD_TRAIL: Row[] = [
  failure({ url: SLACK_URL, status: 503 }),
  { type: 'rollout.created', actor: 'alice', data: { url: 'https://example.com/not/a/webhook' } },
  // fetch quoted the URL it refused, userinfo and all; the row's `url` kept only its origin and path.
  failure({
    url: MATTERMOST_URL,
    error: `TypeError: Request cannot be constructed from a URL that includes credentials: https://bot:pa55@chat.example.com/hooks/${MATTERMOST_KEY}`,
  }),
  failure({ url: 'not a url', error: 'TypeError: fetch failed (ECONNREFUSED)' }),
  // Written by a coordinator that has endpoint labels (one of a group upgraded first).
  failure({ endpoint: 'ops-slack', status: 500 }),
];

/** A store at the version before the relabelling, its trail filled; `start` opens it as a coordinator does. */
interface Subject {
  start(): Promise<void>;
  trail(): Promise<Trail>;
  close(): Promise<void>;
}

function sqliteAt15(rows: readonly Row[]): Subject {
  const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-relabel-'));
  const file = join(dir, 'fleetpatch.db');
  const old = sqliteAtVersion(file, 15);
  const insert = old.prepare("INSERT INTO events (rollout_id, actor, type, data, at) VALUES ('ro_1', ?, ?, ?, ?)");
  for (const row of rows) insert.run(row.actor, row.type, JSON.stringify(row.data), AT);
  old.close();

  let db: Database.Database | undefined;
  return {
    async start() {
      db = openDatabase(file);
    },
    async trail() {
      const read = db?.prepare('SELECT seq, type, actor, data FROM events ORDER BY seq').all() as
        | { seq: number; type: string; actor: string; data: string | null }[]
        | undefined;
      return (read ?? []).map((row) => ({ ...row, data: row.data === null ? null : JSON.parse(row.data) }));
    },
    async close() {
      db?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresAt5(rows: readonly Row[]): Promise<Subject> {
  const client = await postgresAtVersion(5);
  for (const row of rows) {
    await client.query("INSERT INTO events (rollout_id, actor, type, data, at) VALUES ('ro_1', $1, $2, $3, $4)", [
      row.actor,
      row.type,
      JSON.stringify(row.data),
      AT,
    ]);
  }
  return {
    async start() {
      await migratePostgres(client);
    },
    async trail() {
      const read = await client.query('SELECT seq::integer AS seq, type, actor, data FROM events ORDER BY seq');
      return read.rows as Trail;
    },
    close: () => client.end(),
  };
}

function contract(open: (rows: readonly Row[]) => Promise<Subject>, kind: 'sqlite' | 'postgres'): void {
  let subject: Subject | undefined;
  afterEach(async () => {
    await subject?.close();
    subject = undefined;
  });

  it("names each old row's endpoint by its label: no URL path is left on the trail", async () => {
    subject = await open(OLD_TRAIL);
    await subject.start();
    const trail = await subject.trail();

    const mattermost = hashedWebhookLabel(MATTERMOST_URL);
    expect(trail.slice(0, OLD_TRAIL.length).map((event) => event.data)).toEqual([
      { endpoint: hashedWebhookLabel(SLACK_URL), status: 503, ...delivery },
      OLD_TRAIL[1]?.data,
      {
        endpoint: mattermost,
        error: `TypeError: Request cannot be constructed from a URL that includes credentials: ${mattermost}`,
        ...delivery,
      },
      { endpoint: 'unknown', error: 'TypeError: fetch failed (ECONNREFUSED)', ...delivery },
      OLD_TRAIL[4]?.data,
    ]);
    // The label is the one new rows carry for the same URL: origin and 8 hex digits of its sha256.
    expect(hashedWebhookLabel(SLACK_URL)).toMatch(/^https:\/\/hooks\.slack\.com#[0-9a-f]{8}$/);
    const failures = JSON.stringify(trail.filter((event) => event.type === 'webhook.failed'));
    for (const secret of [SLACK_SECRET, '/services/', MATTERMOST_KEY, '/hooks/', 'pa55', '"url"']) {
      expect(failures).not.toContain(secret);
    }
  });

  it('records the rewrite on the trail: which rows, what changed and why', async () => {
    subject = await open(OLD_TRAIL);
    await subject.start();
    const trail = await subject.trail();
    expect(trail).toHaveLength(OLD_TRAIL.length + 1);
    expect(trail.at(-1)).toMatchObject({
      seq: OLD_TRAIL.length + 1,
      type: 'audit.rewritten',
      actor: 'system',
      data: {
        store: kind,
        migration: kind === 'sqlite' ? 16 : 6,
        eventType: 'webhook.failed',
        count: 3,
        firstSeq: 1,
        lastSeq: 4,
        reason: expect.stringContaining('credential'),
      },
    });
  });

  it('leaves a trail without old rows as it was, with nothing recorded', async () => {
    const current = OLD_TRAIL.slice(4);
    subject = await open(current);
    await subject.start();
    expect(await subject.trail()).toEqual([
      { seq: 1, type: 'webhook.failed', actor: 'system', data: current[0]?.data },
    ]);
  });
}

describe('relabelling old webhook.failed rows on SQLite (migration 16, the reference)', () => {
  contract(async (rows) => sqliteAt15(rows), 'sqlite');
});

describeNeeding(postgresCluster, 'relabelling old webhook.failed rows on PostgreSQL (migration 6)', () => {
  contract(postgresAt5, 'postgres');
});
