import type { ClientBase } from 'pg';
import { NotifyChannel } from '../../group/notify-channels.js';
import {
  AUDIT_REWRITTEN,
  auditRewrittenData,
  RELABEL_PAGE,
  type RewrittenRows,
  relabelledWebhookFailure,
  tallied,
  WEBHOOK_FAILED,
} from '../webhook-failure-relabel.js';
import { EVENT_ORDER_LOCK_KEY } from './postgres-event-repository.js';

/** A row read; its seq comes back as text or number, as the connection's type parsers have it. */
interface WebhookFailureRow {
  seq: string | number;
  data: Record<string, unknown>;
}

/**
 * PostgreSQL's step of migration 6, in the migration's transaction: the twin of SQLite's
 * `relabelWebhookFailures` (../webhook-failure-relabel.ts says why rows are rewritten in place).
 */
export async function relabelWebhookFailuresOnPostgres(client: ClientBase): Promise<void> {
  let rewritten: RewrittenRows | undefined;
  // A page at a time, by seq: the trail is never read into memory whole.
  for (let after: WebhookFailureRow['seq'] = 0; ; ) {
    const { rows }: { rows: WebhookFailureRow[] } = await client.query<WebhookFailureRow>(
      `SELECT seq, data FROM events WHERE seq > $1 AND type = '${WEBHOOK_FAILED}' AND data ? 'url'
       ORDER BY seq LIMIT ${RELABEL_PAGE}`,
      [after],
    );
    for (const row of rows) {
      await client.query('UPDATE events SET data = $1::jsonb WHERE seq = $2', [
        JSON.stringify(relabelledWebhookFailure(row.data)),
        row.seq,
      ]);
      rewritten = tallied(rewritten, Number(row.seq));
    }
    const last = rows.at(-1);
    if (last === undefined) break;
    after = last.seq;
  }
  if (rewritten === undefined) return;
  // Appended as PostgresEventRepository.append does: its seq commits in order with every other
  // coordinator's of the group, and their event tails are told.
  await client.query(
    `INSERT INTO events (rollout_id, host_id, actor, type, from_state, to_state, data, at)
     SELECT NULL, NULL, 'system', $1, NULL, NULL, $2::jsonb, $3
       FROM (SELECT pg_advisory_xact_lock(${EVENT_ORDER_LOCK_KEY}), pg_notify('${NotifyChannel.events}', '')) AS ordered`,
    [AUDIT_REWRITTEN, JSON.stringify(auditRewrittenData('postgres', 6, rewritten)), new Date().toISOString()],
  );
}
