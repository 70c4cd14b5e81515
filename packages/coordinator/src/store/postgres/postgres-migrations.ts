import type { ClientBase } from 'pg';
import { relabelWebhookFailuresOnPostgres } from './postgres-webhook-failure-relabel.js';

/**
 * The PostgreSQL schema's versioned migrations, applied in order (postgres-migrate.ts). Never edit a
 * migration that has shipped; add a new one — and its SQLite twin in ../migrations.ts in the same
 * change: test/postgres-schema-parity.test.ts fails while the two schemas differ in tables, columns
 * or NOT NULL.
 *
 * PostgreSQL starts where SQLite is after its migration 12, so its version 1 is that whole schema;
 * `sqliteVersion` names the SQLite migration each one matches, which is how migrate-store knows a
 * SQLite file has the columns this schema expects.
 *
 * How SQLite's types map (SQLite keeps whatever it is given; PostgreSQL checks):
 * - ISO-8601 text timestamps (`created_at`, `at`, …) → timestamptz(3): the coordinator writes
 *   `Date.toISOString()`, millisecond precision, so they read back as the same instant; PostgreSQL
 *   refuses a malformed one instead of sorting it as text.
 * - millisecond epoch integers (`dispatched_at`, `bake_until`, `started_at` of analyses) → bigint.
 * - 0/1 integer flags (`changed`, `counted_failure`, `answered`, `allow_replace`) → boolean.
 * - JSON held as text (labels, facts, specs, requests, reports, event data) → jsonb: the store
 *   parses them whole, and agents' labels are merged in SQL (SQLite's json_patch, jsonb's `||`).
 *   Except `statements.json`, a document people signed: it stays text, byte for byte what was signed
 *   (jsonb would reorder its keys and drop duplicates).
 * - INTEGER PRIMARY KEY / AUTOINCREMENT (event and measurement seq, dictionary ids) → identity
 *   columns BY DEFAULT, so migrate-store can keep the numbers and then move the sequence past them.
 * - SQLite's implicit rowid, which the repositories order by as "the order rows were written"
 *   (host_runs, statements, statement_signatures) → an explicit `rowid` identity column of the same
 *   name, so those queries keep their meaning.
 * - Text that is sorted (ids, names) is COLLATE "C": SQLite compares text byte by byte, and
 *   PostgreSQL's default collation is the database's locale, which would order ids differently.
 */
export interface PostgresMigration {
  readonly version: number;
  readonly name: string;
  /** The SQLite migration (../migrations.ts) whose schema this one brings PostgreSQL to. */
  readonly sqliteVersion: number;
  readonly sql: string;
  /** Rows to rewrite, once, after `sql` in the same transaction (as SQLite's `Migration.rewrite`). */
  readonly rewrite?: (client: ClientBase) => Promise<void>;
}

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'the schema of SQLite migrations 1 to 12',
    sqliteVersion: 12,
    sql: `
      CREATE TABLE agents (
        id text COLLATE "C" PRIMARY KEY,
        public_key text,
        labels jsonb NOT NULL DEFAULT '{}',
        reported_labels jsonb NOT NULL DEFAULT '{}',
        facts jsonb,
        agent_version text,
        last_seen_at timestamptz(3),
        created_at timestamptz(3) NOT NULL,
        enrolled_at timestamptz(3),
        revoked_at timestamptz(3),
        removed_at timestamptz(3)
      );

      CREATE TABLE join_tokens (
        id text COLLATE "C" PRIMARY KEY,
        token_sha256 text NOT NULL UNIQUE,
        description text,
        created_by text NOT NULL,
        created_at timestamptz(3) NOT NULL,
        expires_at timestamptz(3) NOT NULL,
        max_uses integer NOT NULL,
        uses integer NOT NULL DEFAULT 0,
        labels jsonb NOT NULL DEFAULT '{}',
        host_id text,
        allow_replace boolean NOT NULL DEFAULT false,
        revoked_at timestamptz(3)
      );

      CREATE TABLE patches (
        id text COLLATE "C" PRIMARY KEY,
        spec jsonb NOT NULL,
        created_by text NOT NULL,
        created_at timestamptz(3) NOT NULL,
        content_digest text
      );
      CREATE INDEX patches_content_digest ON patches (content_digest);

      CREATE TABLE rollouts (
        id text COLLATE "C" PRIMARY KEY,
        patch_id text COLLATE "C" NOT NULL REFERENCES patches (id),
        request jsonb NOT NULL,
        state text NOT NULL,
        created_by text NOT NULL,
        host_count integer NOT NULL DEFAULT 0,
        wave_count integer NOT NULL DEFAULT 0,
        current_wave integer NOT NULL DEFAULT 0,
        bake_until bigint,
        state_reason text,
        created_at timestamptz(3) NOT NULL,
        updated_at timestamptz(3) NOT NULL,
        started_at timestamptz(3),
        finished_at timestamptz(3),
        promotion jsonb
      );
      CREATE INDEX rollouts_state ON rollouts (state);

      CREATE TABLE approvals (
        rollout_id text COLLATE "C" NOT NULL REFERENCES rollouts (id),
        approver text NOT NULL,
        at timestamptz(3) NOT NULL,
        PRIMARY KEY (rollout_id, approver)
      );

      CREATE TABLE host_runs (
        rowid bigint GENERATED BY DEFAULT AS IDENTITY UNIQUE,
        rollout_id text COLLATE "C" NOT NULL REFERENCES rollouts (id),
        host_id text COLLATE "C" NOT NULL,
        wave integer NOT NULL,
        position integer NOT NULL,
        state text NOT NULL,
        order_id text UNIQUE,
        revert_order_id text UNIQUE,
        changed boolean NOT NULL DEFAULT false,
        counted_failure boolean NOT NULL DEFAULT false,
        dispatched_at bigint,
        finished_at bigint,
        error_code text,
        reason text,
        health jsonb,
        answered boolean NOT NULL DEFAULT false,
        after_change jsonb,
        packages jsonb,
        rehearsal jsonb,
        PRIMARY KEY (rollout_id, host_id)
      );
      CREATE INDEX host_runs_wave_state ON host_runs (rollout_id, wave, state);
      CREATE INDEX host_runs_host ON host_runs (host_id, state);
      CREATE INDEX host_runs_state ON host_runs (state, dispatched_at);
      -- Read after every burst of agent reports: their cost follows the few matching rows.
      CREATE INDEX host_runs_failures ON host_runs (rollout_id, wave) WHERE counted_failure;
      CREATE INDEX host_runs_changed ON host_runs (rollout_id, wave, position) WHERE changed;

      CREATE TABLE events (
        seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        rollout_id text COLLATE "C",
        host_id text COLLATE "C",
        actor text NOT NULL,
        type text NOT NULL,
        from_state text,
        to_state text,
        data jsonb,
        at timestamptz(3) NOT NULL
      );
      CREATE INDEX events_rollout ON events (rollout_id, seq);

      CREATE TABLE statements (
        rowid bigint GENERATED BY DEFAULT AS IDENTITY UNIQUE,
        digest text COLLATE "C" PRIMARY KEY,
        rollout_id text COLLATE "C" NOT NULL REFERENCES rollouts (id),
        kind text NOT NULL,
        scope text NOT NULL,
        json text NOT NULL,
        created_at timestamptz(3) NOT NULL,
        used_at timestamptz(3)
      );
      CREATE INDEX statements_rollout ON statements (rollout_id, kind, scope);

      CREATE TABLE statement_signatures (
        rowid bigint GENERATED BY DEFAULT AS IDENTITY UNIQUE,
        digest text COLLATE "C" NOT NULL REFERENCES statements (digest),
        key_id text NOT NULL,
        public_key text NOT NULL,
        signature text NOT NULL,
        signer text NOT NULL,
        role text NOT NULL,
        at timestamptz(3) NOT NULL,
        PRIMARY KEY (digest, key_id)
      );

      -- 10,000 hosts × 2,000 packages is 20 million host_packages rows: two integers each, the
      -- strings once in package_versions.
      CREATE TABLE package_versions (
        id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name text COLLATE "C" NOT NULL,
        architecture text COLLATE "C" NOT NULL,
        version text COLLATE "C" NOT NULL,
        source text COLLATE "C" NOT NULL,
        source_version text COLLATE "C" NOT NULL,
        status text COLLATE "C" NOT NULL,
        UNIQUE (name, architecture, version, source, source_version, status)
      );
      CREATE INDEX package_versions_source ON package_versions (source);

      CREATE TABLE host_inventories (
        id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        host_id text COLLATE "C" NOT NULL UNIQUE REFERENCES agents (id),
        state text NOT NULL CHECK (state IN ('reported', 'unavailable')),
        reason text,
        digest text,
        package_count integer NOT NULL DEFAULT 0,
        reported_at timestamptz(3) NOT NULL,
        confirmed_at timestamptz(3) NOT NULL
      );

      CREATE TABLE host_packages (
        inventory_id integer NOT NULL REFERENCES host_inventories (id),
        package_version_id integer NOT NULL REFERENCES package_versions (id),
        PRIMARY KEY (inventory_id, package_version_id)
      );
      CREATE INDEX host_packages_by_version ON host_packages (package_version_id, inventory_id);

      CREATE TABLE analysis_runs (
        rollout_id text COLLATE "C" NOT NULL REFERENCES rollouts (id),
        wave integer NOT NULL,
        name text COLLATE "C" NOT NULL,
        attempt integer NOT NULL,
        started_at bigint NOT NULL,
        last_at bigint,
        taken integer NOT NULL DEFAULT 0,
        taken_in_bake integer NOT NULL DEFAULT 0,
        failed integer NOT NULL DEFAULT 0,
        inconclusive integer NOT NULL DEFAULT 0,
        verdict text NOT NULL,
        PRIMARY KEY (rollout_id, wave, name)
      );

      CREATE TABLE analysis_measurements (
        seq bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        rollout_id text COLLATE "C" NOT NULL REFERENCES rollouts (id),
        wave integer NOT NULL,
        name text COLLATE "C" NOT NULL,
        attempt integer NOT NULL,
        at timestamptz(3) NOT NULL,
        phase text NOT NULL,
        value double precision,
        baseline double precision,
        threshold double precision,
        verdict text NOT NULL,
        reason text
      );
      CREATE INDEX analysis_measurements_run ON analysis_measurements (rollout_id, wave, name, attempt, seq);
    `,
  },
  {
    version: 2,
    name: 'a coordinator group: members, rollout leases, agent connections and the agent outbox',
    sqliteVersion: 12,
    // PostgreSQL only (GROUP_TABLES): a SQLite store has one coordinator, which needs none of them.
    sql: `
      CREATE TABLE coordinators (
        id text COLLATE "C" PRIMARY KEY,
        started_at timestamptz(3) NOT NULL,
        heartbeat_at timestamptz(3) NOT NULL
      );

      CREATE TABLE rollout_leases (
        rollout_id text COLLATE "C" PRIMARY KEY REFERENCES rollouts (id),
        holder text COLLATE "C" NOT NULL,
        token bigint NOT NULL,
        expires_at timestamptz(3) NOT NULL
      );

      CREATE TABLE agent_connections (
        agent_id text COLLATE "C" PRIMARY KEY,
        coordinator_id text COLLATE "C" NOT NULL,
        protocol_version integer,
        connected_at timestamptz(3) NOT NULL
      );
      CREATE INDEX agent_connections_by_coordinator ON agent_connections (coordinator_id);

      CREATE TABLE agent_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        agent_id text COLLATE "C" NOT NULL,
        message jsonb NOT NULL,
        created_at timestamptz(3) NOT NULL
      );
      CREATE INDEX agent_outbox_by_agent ON agent_outbox (agent_id, id);
    `,
  },
  {
    version: 3,
    name: "a wave's queued hosts in dispatch order straight from the index: the next few to send never sort the wave",
    sqliteVersion: 13,
    sql: `
      CREATE INDEX host_runs_wave_state_position ON host_runs (rollout_id, wave, state, position);
      DROP INDEX host_runs_wave_state;
    `,
  },
  {
    version: 4,
    name: "a rollout's own events apart from its hosts': how a reverted rollout's apply ended is found in a few rows, not 2 per host",
    sqliteVersion: 14,
    sql: 'CREATE INDEX events_rollout_own ON events (rollout_id, seq) WHERE host_id IS NULL;',
  },
  {
    version: 5,
    name: "patch summaries apart from patches: a list reads none of a patch's content, newest first from the index",
    sqliteVersion: 15,
    // Filled for earlier patches when the store opens (PostgresPatchRepository.backfillSummaries).
    sql: `
      CREATE TABLE patch_summaries (
        id text COLLATE "C" PRIMARY KEY REFERENCES patches (id),
        created_at timestamptz(3) NOT NULL,
        summary jsonb NOT NULL
      );
      CREATE INDEX patch_summaries_newest ON patch_summaries (created_at, id);
    `,
  },
  {
    version: 6,
    name: 'webhook.failed rows name their endpoint by a label, not its URL (whose path can be its credential)',
    sqliteVersion: 16,
    sql: '',
    rewrite: relabelWebhookFailuresOnPostgres,
  },
  {
    version: 7,
    name: 'when an apply order reached its host: the host timeout runs from delivery, an undelivered order waits out its delivery deadline',
    sqliteVersion: 17,
    sql: `
      ALTER TABLE host_runs ADD COLUMN delivered_at bigint;
      UPDATE host_runs SET delivered_at = dispatched_at
        WHERE state IN ('dispatched', 'delivered', 'snapshotted', 'applying', 'verifying');
    `,
  },
];

/**
 * Tables only a PostgreSQL store has: how the coordinators of one group share work (see ../../group/).
 * The schema parity test leaves them out.
 */
export const GROUP_TABLES: readonly string[] = ['agent_connections', 'agent_outbox', 'coordinators', 'rollout_leases'];
