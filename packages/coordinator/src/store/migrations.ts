import type Database from 'better-sqlite3';
import { relabelWebhookFailures } from './webhook-failure-relabel.js';

/**
 * Versioned schema migrations, applied in order inside one transaction each. Never edit a
 * migration that has shipped; add a new one.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /**
   * Rows to rewrite, once, after `sql` in the same transaction: for what SQL alone cannot compute. A
   * backfill that is safe to repeat at every start (patch digests, summaries) belongs to the
   * repository instead; this is for one that should run once, recorded with the version.
   */
  rewrite?: (db: Database.Database) => void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        labels TEXT NOT NULL DEFAULT '{}',
        reported_labels TEXT NOT NULL DEFAULT '{}',
        facts TEXT,
        agent_version TEXT,
        last_seen_at TEXT,
        created_at TEXT NOT NULL
      );

      CREATE TABLE patches (
        id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL
      );

      CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        patch_id TEXT NOT NULL REFERENCES patches(id),
        request TEXT NOT NULL,
        state TEXT NOT NULL,
        created_by TEXT NOT NULL,
        host_count INTEGER NOT NULL DEFAULT 0,
        wave_count INTEGER NOT NULL DEFAULT 0,
        current_wave INTEGER NOT NULL DEFAULT 0,
        bake_until INTEGER,
        state_reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
      );
      CREATE INDEX rollouts_state ON rollouts(state);

      CREATE TABLE approvals (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        approver TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (rollout_id, approver)
      );

      CREATE TABLE host_runs (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        host_id TEXT NOT NULL,
        wave INTEGER NOT NULL,
        position INTEGER NOT NULL,
        state TEXT NOT NULL,
        order_id TEXT UNIQUE,
        revert_order_id TEXT UNIQUE,
        changed INTEGER NOT NULL DEFAULT 0,
        counted_failure INTEGER NOT NULL DEFAULT 0,
        dispatched_at INTEGER,
        finished_at INTEGER,
        error_code TEXT,
        reason TEXT,
        health TEXT,
        PRIMARY KEY (rollout_id, host_id)
      );
      CREATE INDEX host_runs_wave_state ON host_runs(rollout_id, wave, state);
      CREATE INDEX host_runs_host ON host_runs(host_id, state);

      CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout_id TEXT,
        host_id TEXT,
        actor TEXT NOT NULL,
        type TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT,
        data TEXT,
        at TEXT NOT NULL
      );
      CREATE INDEX events_rollout ON events(rollout_id, seq);
    `,
  },
  {
    version: 2,
    name: 'index host runs by state, for deadline checks across rollouts',
    sql: 'CREATE INDEX host_runs_state ON host_runs(state, dispatched_at);',
  },
  {
    version: 3,
    name: 'partial indexes for failure counts and revert candidates, so their cost follows the few matching rows',
    // Both are read after every burst of agent reports; without these they scan every host of the rollout.
    sql: `
      CREATE INDEX host_runs_failures ON host_runs(rollout_id, wave) WHERE counted_failure = 1;
      CREATE INDEX host_runs_changed ON host_runs(rollout_id, wave, position) WHERE changed = 1;
    `,
  },
  {
    version: 4,
    name: 'host runs remember whether their current apply order has answered',
    // A timed-out host is only re-ordered once its earlier order answered (or provably never arrived).
    sql: 'ALTER TABLE host_runs ADD COLUMN answered INTEGER NOT NULL DEFAULT 0;',
  },
  {
    version: 5,
    name: 'enrollment: agents hold ed25519 public keys instead of token hashes; join tokens',
    // Agents registered with a bearer token keep their row and history but no credential: they enroll
    // once with a join token (enrolled_at IS NULL lets them, without `replace`). SQLite cannot drop a
    // UNIQUE column, hence the copy.
    sql: `
      CREATE TABLE agents_v5 (
        id TEXT PRIMARY KEY,
        public_key TEXT,
        labels TEXT NOT NULL DEFAULT '{}',
        reported_labels TEXT NOT NULL DEFAULT '{}',
        facts TEXT,
        agent_version TEXT,
        last_seen_at TEXT,
        created_at TEXT NOT NULL,
        enrolled_at TEXT,
        revoked_at TEXT
      );
      INSERT INTO agents_v5 (id, labels, reported_labels, facts, agent_version, last_seen_at, created_at)
        SELECT id, labels, reported_labels, facts, agent_version, last_seen_at, created_at FROM agents;
      DROP TABLE agents;
      ALTER TABLE agents_v5 RENAME TO agents;

      CREATE TABLE join_tokens (
        id TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        description TEXT,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        max_uses INTEGER NOT NULL,
        uses INTEGER NOT NULL DEFAULT 0,
        labels TEXT NOT NULL DEFAULT '{}',
        host_id TEXT,
        allow_replace INTEGER NOT NULL DEFAULT 0,
        revoked_at TEXT
      );
    `,
  },
  {
    version: 6,
    name: 'signed rollouts: the statements people signed, and their signatures',
    // Forwarded to agents untouched; the agents, not these rows, decide what is valid. `scope` is
    // 'rollout' (the apply statement, or a revert of the whole rollout) or 'host:<id>' (a revert of
    // one host). A revert statement is pending until `used_at`, when the revert it allowed started.
    sql: `
      CREATE TABLE statements (
        digest TEXT PRIMARY KEY,
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        kind TEXT NOT NULL,
        scope TEXT NOT NULL,
        json TEXT NOT NULL,
        created_at TEXT NOT NULL,
        used_at TEXT
      );
      CREATE INDEX statements_rollout ON statements(rollout_id, kind, scope);

      CREATE TABLE statement_signatures (
        digest TEXT NOT NULL REFERENCES statements(digest),
        key_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        signature TEXT NOT NULL,
        signer TEXT NOT NULL,
        role TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (digest, key_id)
      );
    `,
  },
  {
    version: 7,
    name: "package inventory: a dictionary of installed package versions and each host's set of them",
    // 10,000 hosts × 2,000 packages is 20 million host_packages rows: two integers each (WITHOUT ROWID,
    // no per-row strings), the strings once in package_versions. Lookups by name use the UNIQUE
    // index's prefix, by source their own index; counts per version read host_packages_by_version.
    sql: `
      CREATE TABLE package_versions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        architecture TEXT NOT NULL,
        version TEXT NOT NULL,
        source TEXT NOT NULL,
        source_version TEXT NOT NULL,
        status TEXT NOT NULL,
        UNIQUE (name, architecture, version, source, source_version, status)
      );
      CREATE INDEX package_versions_source ON package_versions(source);

      CREATE TABLE host_inventories (
        id INTEGER PRIMARY KEY,
        host_id TEXT NOT NULL UNIQUE REFERENCES agents(id),
        state TEXT NOT NULL CHECK (state IN ('reported', 'unavailable')),
        reason TEXT,
        digest TEXT,
        package_count INTEGER NOT NULL DEFAULT 0,
        reported_at TEXT NOT NULL,
        confirmed_at TEXT NOT NULL
      );

      CREATE TABLE host_packages (
        inventory_id INTEGER NOT NULL REFERENCES host_inventories(id),
        package_version_id INTEGER NOT NULL REFERENCES package_versions(id),
        PRIMARY KEY (inventory_id, package_version_id)
      ) WITHOUT ROWID;
      CREATE INDEX host_packages_by_version ON host_packages(package_version_id, inventory_id);
    `,
  },
  {
    version: 8,
    name: "host runs keep the agent's after-change report (restarts, stale services, reboot)",
    sql: 'ALTER TABLE host_runs ADD COLUMN after_change TEXT;',
  },
  {
    version: 9,
    name: 'package sets: the packages an apply resolved to on each host (name, from, to, snapshot), as JSON',
    sql: 'ALTER TABLE host_runs ADD COLUMN packages TEXT;',
  },
  {
    version: 10,
    name: 'metric analyses (a run per rollout, wave and analysis; every measurement), and rehearsed reverts',
    // A run's counters are the current attempt's (a retry of the wave starts a new attempt); the
    // measurements of every attempt are kept, like the audit rows that repeat them.
    sql: `
      CREATE TABLE analysis_runs (
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        wave INTEGER NOT NULL,
        name TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        last_at INTEGER,
        taken INTEGER NOT NULL DEFAULT 0,
        taken_in_bake INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        inconclusive INTEGER NOT NULL DEFAULT 0,
        verdict TEXT NOT NULL,
        PRIMARY KEY (rollout_id, wave, name)
      );

      CREATE TABLE analysis_measurements (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout_id TEXT NOT NULL REFERENCES rollouts(id),
        wave INTEGER NOT NULL,
        name TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at TEXT NOT NULL,
        phase TEXT NOT NULL,
        value REAL,
        baseline REAL,
        threshold REAL,
        verdict TEXT NOT NULL,
        reason TEXT
      );
      CREATE INDEX analysis_measurements_run ON analysis_measurements(rollout_id, wave, name, attempt, seq);

      -- The canary's rehearsed revert as its agent reported it (JSON), for the status.
      ALTER TABLE host_runs ADD COLUMN rehearsal TEXT;
    `,
  },
  {
    version: 11,
    name: "staging before production: a patch's content digest, and what start decided under the promotion order",
    // content_digest is filled for earlier patches when the store opens (PatchRepository.backfillDigests).
    sql: `
      ALTER TABLE patches ADD COLUMN content_digest TEXT;
      CREATE INDEX patches_content_digest ON patches(content_digest);
      ALTER TABLE rollouts ADD COLUMN promotion TEXT;
    `,
  },
  {
    version: 12,
    name: 'agents an admin removed from the fleet (DELETE /v1/agents/:id): kept with their history, selected by no target',
    sql: 'ALTER TABLE agents ADD COLUMN removed_at TEXT;',
  },
  {
    version: 13,
    name: "a wave's queued hosts in dispatch order straight from the index: the next few to send never sort the wave",
    // Replaces host_runs_wave_state, whose prefix it is: the counts by wave and state stay covered.
    sql: `
      CREATE INDEX host_runs_wave_state_position ON host_runs(rollout_id, wave, state, position);
      DROP INDEX host_runs_wave_state;
    `,
  },
  {
    version: 14,
    name: "a rollout's own events apart from its hosts': how a reverted rollout's apply ended is found in a few rows, not 2 per host",
    sql: 'CREATE INDEX events_rollout_own ON events(rollout_id, seq) WHERE host_id IS NULL;',
  },
  {
    version: 15,
    name: "patch summaries apart from patches: a list reads none of a patch's content, newest first from the index",
    // A patch's spec holds its file content (up to 1 MiB): the list reads this table alone. Filled for
    // earlier patches when the store opens (PatchRepository.backfillSummaries).
    sql: `
      CREATE TABLE patch_summaries (
        id TEXT PRIMARY KEY REFERENCES patches(id),
        created_at TEXT NOT NULL,
        summary TEXT NOT NULL
      );
      CREATE INDEX patch_summaries_newest ON patch_summaries(created_at, id);
    `,
  },
  {
    version: 16,
    name: 'webhook.failed rows name their endpoint by a label, not its URL (whose path can be its credential)',
    // No schema change: the rows' data is rewritten (webhook-failure-relabel.ts), computed in TypeScript
    // with the notifier's own label function. Once, here, not at every start as patch summaries are
    // filled: nothing indexes events by type, so finding such rows reads the whole audit trail.
    sql: '',
    rewrite: relabelWebhookFailures,
  },
  {
    version: 17,
    name: 'when an apply order reached its host: the host timeout runs from delivery, an undelivered order waits out its delivery deadline',
    // Runs already in flight keep the deadlines they had: as if delivered when dispatched.
    sql: `
      ALTER TABLE host_runs ADD COLUMN delivered_at INTEGER;
      UPDATE host_runs SET delivered_at = dispatched_at
        WHERE state IN ('dispatched', 'delivered', 'snapshotted', 'applying', 'verifying');
    `,
  },
];
