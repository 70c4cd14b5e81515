import type Database from 'better-sqlite3';
import { webhookEndpointLabel } from '../notify/webhook-endpoint-label.js';

/*
 * SQLite migration 16, PostgreSQL 6: `webhook.failed` rows written before endpoint labels named
 * their endpoint by `url` — its origin and path, and Slack, Discord and Mattermost keep the
 * credential in the path — on the audit trail that every viewer reads. Each such row's data gets the
 * `endpoint` label new rows have and loses `url`.
 *
 * The rows are rewritten in place. The audit trail is append-only by convention, not tamper-evident:
 * no row is chained to another, hashed or signed, and nothing verifies one (SECURITY.md: whoever holds
 * the database "can rewrite or drop the audit trail"), so no check breaks. Keeping the rows as they
 * were would keep the credential in front of every viewer, which is what this is for. What changed is
 * not hidden either: one `audit.rewritten` event, appended in the migration's own transaction, says
 * which rows were rewritten and why (none when no row needed it).
 *
 * Only the data changes: seq, time, actor, type and rollout stay, so a reader's place in the trail
 * (a `Last-Event-ID`, an `after` cursor) means what it meant.
 */

/** The event type as those rows were written, pinned here: a migration means what it meant when it shipped. */
export const WEBHOOK_FAILED = 'webhook.failed';
/** The event that records the rewrite on the trail. */
export const AUDIT_REWRITTEN = 'audit.rewritten';
/** Rows read at once: the trail may hold many such rows (every event a dead receiver was sent). */
export const RELABEL_PAGE = 100;
/** The label of an endpoint whose recorded URL does not parse. */
export const UNKNOWN_ENDPOINT = 'unknown';

/** A URL in an old row's error text; fetch quoted the whole URL in some of its errors, userinfo and all. */
const URL_IN_TEXT = /\bhttps?:\/\/[^\s"'<>]+/gi;

/**
 * An old row's data as a new row has it: `endpoint` first (as the notifier writes it), no `url`, and
 * any URL in its error replaced by that label. The label is the notifier's for a URL without a name,
 * computed from what the row kept: origin and path. For an endpoint configured with a name, or whose
 * URL had a query or another spelling of the same address, it is not the label that endpoint's new
 * rows carry; the row held nothing more to compute that from.
 */
export function relabelledWebhookFailure(data: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { url, ...rest } = data;
  const endpoint = labelOfRecorded(url);
  const error = typeof rest.error === 'string' ? { error: rest.error.replace(URL_IN_TEXT, endpoint) } : {};
  return { endpoint, ...rest, ...error };
}

function labelOfRecorded(url: unknown): string {
  if (typeof url !== 'string') return UNKNOWN_ENDPOINT;
  try {
    return webhookEndpointLabel({ url });
  } catch {
    return UNKNOWN_ENDPOINT;
  }
}

/** The seqs a rewrite went over. */
export interface RewrittenRows {
  count: number;
  firstSeq: number;
  lastSeq: number;
}

/** The data of the `audit.rewritten` event: which store's migration rewrote which rows, what and why. */
export function auditRewrittenData(store: 'sqlite' | 'postgres', migration: number, rows: RewrittenRows) {
  return {
    store,
    migration,
    eventType: WEBHOOK_FAILED,
    ...rows,
    change: 'data.url (origin and path) became data.endpoint (origin and a sha256 prefix), as did a URL in data.error',
    reason: "a webhook URL's path can be its credential, and every viewer reads the audit trail",
  };
}

/** One more row into the tally. */
export function tallied(rows: RewrittenRows | undefined, seq: number): RewrittenRows {
  return rows === undefined
    ? { count: 1, firstSeq: seq, lastSeq: seq }
    : { ...rows, count: rows.count + 1, lastSeq: seq };
}

/** SQLite's step, in migration 16's transaction. */
export function relabelWebhookFailures(db: Database.Database): void {
  // json_type is NULL where the path is missing: rows already labelled are not read.
  const page = db.prepare(
    `SELECT seq, data FROM events WHERE seq > ? AND type = '${WEBHOOK_FAILED}' AND json_type(data, '$.url') IS NOT NULL
     ORDER BY seq LIMIT ${RELABEL_PAGE}`,
  );
  const rewrite = db.prepare('UPDATE events SET data = ? WHERE seq = ?');
  let rewritten: RewrittenRows | undefined;
  // A page at a time, by seq: the trail is never read into memory whole.
  for (let after = 0; ; ) {
    const rows = page.all(after) as { seq: number; data: string }[];
    for (const row of rows) {
      rewrite.run(JSON.stringify(relabelledWebhookFailure(JSON.parse(row.data) as Record<string, unknown>)), row.seq);
      rewritten = tallied(rewritten, row.seq);
    }
    const last = rows.at(-1);
    if (last === undefined) break;
    after = last.seq;
  }
  if (rewritten === undefined) return;
  db.prepare(
    `INSERT INTO events (rollout_id, host_id, actor, type, from_state, to_state, data, at)
     VALUES (NULL, NULL, 'system', ?, NULL, NULL, ?, ?)`,
  ).run(AUDIT_REWRITTEN, JSON.stringify(auditRewrittenData('sqlite', 16, rewritten)), new Date().toISOString());
}
