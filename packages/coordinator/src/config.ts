import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  ChangeRecordFieldSchema,
  MAX_FRAME_BYTES,
  MAX_HEARTBEAT_INTERVAL_MS,
  parseConfigText,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { apiTokenHash } from './http/api-auth.js';

export const ROLES = ['viewer', 'operator', 'approver', 'admin'] as const;
export const RoleSchema = z.enum(ROLES);
export type Role = z.infer<typeof RoleSchema>;

export const ApiTokenSchema = z
  .object({
    /** Recorded as the actor of every action taken with this token. */
    name: z.string().min(1).max(100),
    /** The token itself, or its sha256 (hex) so the config file holds no secret. */
    token: z.string().min(16).optional(),
    tokenSha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
    role: RoleSchema,
  })
  .strict()
  .refine((t) => (t.token === undefined) !== (t.tokenSha256 === undefined), 'give exactly one of token or tokenSha256');
export type ApiToken = z.infer<typeof ApiTokenSchema>;

export const WebhookSchema = z
  .object({
    /** A secret (Slack, Discord and Mattermost hold the credential in its path): never logged or audited. */
    url: z
      .url({ protocol: /^https?$/ })
      // fetch refuses a URL with credentials in it, so every delivery would fail: said at start instead.
      .refine((url) => {
        const { username, password } = new URL(url);
        return username === '' && password === '';
      }, "must not carry a user or password (fetch refuses them): use the endpoint's own token in its path or `secret`"),
    /**
     * How logs and `webhook.failed` rows name the endpoint, e.g. "ops-slack"; without it, its origin
     * and the first 8 hex digits of the URL's sha256 (`https://hooks.slack.com#3f2a9c1b`).
     */
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be letters, digits, ".", "_" or "-" (at most 63)')
      .optional(),
    events: z.union([z.literal('*'), z.array(z.string().min(1))]).default('*'),
    secret: z.string().min(1).optional(),
  })
  .strict();

/**
 * Staging before production: environments in the order a change must pass them, named by an admin
 * label of the hosts. A rollout that reaches hosts of a later environment starts only once the same
 * content (patch content digest) has a succeeded rollout on the environment just before, finished at
 * least `minSoakMinutes` ago and not reverted since. Absent: no promotion rule.
 */
export const PromotionSchema = z
  .object({
    /** The admin label (set by the join token) that names a host's environment (default "env"). */
    label: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/, 'must be a label key')
      .default('env'),
    /** Earliest first, e.g. ["staging", "prod"]. Hosts without the label, or another value, count as the last. */
    order: z
      .array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be a label value'))
      .min(2)
      .max(20)
      .refine((order) => new Set(order).size === order.length, 'must name each environment once'),
    /** How long after its rollout succeeded a change soaks before the next environment (default 60; fractions allowed). */
    minSoakMinutes: z.number().min(0).max(525_600).default(60),
  })
  .strict();
export type PromotionConfig = z.infer<typeof PromotionSchema>;

/** The change record fields a rollout's patch must fill before the rollout is approved or started (default none). */
export const ChangeRecordConfigSchema = z
  .object({
    required: z
      .array(ChangeRecordFieldSchema)
      .max(3)
      .refine((fields) => new Set(fields).size === fields.length, 'must name each field once')
      .default([]),
  })
  .strict();

/**
 * How webhooks are delivered: each attempt is cut after `timeoutMs`; a failed one is retried up to
 * `maxAttempts` in all, with exponential backoff from `baseDelayMs` (full jitter, at most
 * `maxDelayMs`). A delivery given up is logged and audited (`webhook.failed`). Deliveries never
 * hold up a rollout: they are queued after the transaction commits.
 */
export const WebhookDeliverySchema = z
  .object({
    timeoutMs: z.number().int().min(100).max(60_000).default(5000),
    maxAttempts: z.number().int().min(1).max(20).default(6),
    baseDelayMs: z.number().int().min(1).max(60_000).default(500),
    maxDelayMs: z.number().int().min(1).max(600_000).default(30_000),
  })
  .strict();

/** A budget of bytes before authentication: at least one frame of the largest size, a hello's. */
const pendingBytes = z
  .number()
  .int()
  .min(MAX_FRAME_BYTES)
  .max(2 ** 40);

/**
 * Limits on the agent socket, which anyone who can reach the port can dial. Each is per coordinator
 * unless it says otherwise; the defaults leave a real fleet far from every one of them.
 */
export const AgentLimitsSchema = z
  .object({
    /**
     * Sockets that have asked to upgrade but are not yet authenticated (default 2048). Beyond it an
     * upgrade is answered `503` and the socket destroyed, before any WebSocket work is done. Sized to
     * what one coordinator authenticates within `handshakeTimeoutMs` (~1 ms of CPU each), with room to
     * spare: a fleet that redials at once (a reset link, a restarted coordinator) is let in, not sent
     * away. A refused agent backs off exponentially, so refusing the fleet's own storm stretched it
     * (a 10,000-agent reset in the bench: 21 s with the old 256 and 64, 14 s with 2048; README,
     * Performance). A pending socket holds less than a connected agent (~9 KiB measured): ~20 MB at
     * most, besides the bytes it has sent (`maxPendingBytes`).
     */
    maxPendingSockets: z.number().int().min(1).max(100_000).default(2048),
    /**
     * Of those, at most this many from one remote address (default 256), so that one peer cannot hold
     * more than an eighth of the slots and keep the fleet from reconnecting. Agents behind one NAT that
     * all redial at once are refused 503 beyond it and retry with jitter.
     */
    maxPendingSocketsPerAddress: z.number().int().min(1).max(100_000).default(256),
    /**
     * Bytes the unauthenticated sockets may send in all (default 64 MiB), and from one address
     * (default 16 MiB): a socket that takes either over is destroyed. `ws` keeps an unfinished frame
     * (up to 4 MiB) until the handshake deadline, so without these the socket caps alone let one
     * address hold 1 GiB and all of them 8 GiB. A hello is a few kilobytes, 4 MiB at the most (an
     * agent reporting the results of thousands of orders), so each is at least 4 MiB.
     */
    maxPendingBytes: pendingBytes.default(64 * 1024 * 1024),
    maxPendingBytesPerAddress: pendingBytes.default(16 * 1024 * 1024),
    /**
     * How long a socket may stay unauthenticated, from its first byte of headers to `live` (default
     * 5000). Also the HTTP server's `headersTimeout`, so a request whose headers trickle in is cut too.
     */
    handshakeTimeoutMs: z.number().int().min(100).max(120_000).default(5000),
    /**
     * Per-agent message rate, a token bucket (default 20/s, bursts of 200). A real agent sends a
     * heartbeat per interval and about ten progress messages and a result per order: far below it.
     */
    messagesPerSecond: z.number().min(0.1).max(10_000).default(20),
    messageBurst: z.number().int().min(1).max(100_000).default(200),
    /**
     * When a second connection presents a live agent's credential, how long the live one has to
     * answer a ping (default 2000): if it does the newcomer is refused, if not it is replaced.
     */
    staleCheckMs: z.number().int().min(50).max(60_000).default(2000),
    /** At most one log line per misbehaving peer (address, or agent once known) per interval (default 10000). */
    peerLogIntervalMs: z.number().int().min(100).max(3_600_000).default(10_000),
    /**
     * At most one `agent.connected` row per agent per window, counting the reconnects it stands for (a
     * changed agent version may add one more), and one `agent.duplicate_refused` row (default 60000).
     */
    auditWindowMs: z.number().int().min(1000).max(86_400_000).default(60_000),
  })
  .strict();
export type AgentLimits = z.infer<typeof AgentLimitsSchema>;
/** Failed API authentications tolerated per remote address before it is answered 429. */
export const AuthFailuresSchema = z
  .object({
    maxFailures: z.number().int().min(1).max(1_000_000).default(20),
    windowSeconds: z.number().int().min(1).max(86_400).default(60),
    /** Addresses remembered at once: bounds memory whatever the number of attacking addresses. */
    trackedAddresses: z.number().int().min(1).max(1_000_000).default(10_000),
  })
  .strict();

/**
 * `GET /metrics`. Prometheus metrics hold counts, durations and states, never a host name, but they
 * still say how big the fleet is and how its rollouts go: give a bearer token (in the clear or by its
 * sha256) to require it of the scraper, or leave both out and the endpoint is public, like /healthz.
 */
export const MetricsConfigSchema = z
  .object({
    token: z.string().min(16).optional(),
    tokenSha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
  })
  .strict()
  .refine((m) => m.token === undefined || m.tokenSha256 === undefined, 'give token or tokenSha256, not both');

/**
 * Refused API calls (401, 403) are security events in the audit trail, within a budget: at most one
 * row per address, status and route per window, and at most `maxEventsPerWindow` rows in all, so that a
 * flood of bad tokens from many addresses cannot fill the database. What the budget holds back is
 * counted into the next row written (`suppressedBefore`); every refusal is still logged and counted.
 */
export const RefusalAuditSchema = z
  .object({
    windowSeconds: z.number().int().min(1).max(86_400).default(60),
    maxEventsPerWindow: z.number().int().min(1).max(10_000).default(20),
  })
  .strict();

/**
 * Where the coordinator keeps its state. SQLite (the default) is one file in `dataDir`; PostgreSQL 15
 * is named by a `postgres://user:password@host:port/database` URL (libpq's query options, such as
 * `sslmode`, allowed). The URL holds a password: give it as FLEETPATCH_STORE_URL rather than in a file.
 */
export const StoreConfigSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sqlite') }).strict(),
  z
    .object({
      kind: z.literal('postgres'),
      url: z
        .string()
        .refine((url) => postgresUrl(url) !== undefined, 'must be a postgres:// or postgresql:// URL naming a host'),
      /**
       * This coordinator's name in the group sharing the database: unique per coordinator, and kept
       * across restarts (a restarted coordinator takes its rollouts back at once instead of waiting
       * for their leases to expire). Default: the host name and port. FLEETPATCH_COORDINATOR_ID sets it.
       */
      coordinatorId: z
        .string()
        .regex(
          /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/,
          'letters, digits and . _ : - (1-128), starting with a letter or digit',
        )
        .optional(),
      /**
       * How long a rollout's lease lasts without renewal: after its driver dies, another coordinator
       * takes the rollout over within about this long (plus a tick). Renewed every tick.
       */
      leaseMs: z.number().int().min(500).max(300_000).default(10_000),
    })
    .strict(),
]);
export type StoreConfig = z.infer<typeof StoreConfigSchema>;

function postgresUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    return (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && url.hostname !== '' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** The store as a person may read it (logs, `--check-config`): the SQLite file, or the URL without its password. */
export function storeDescription(config: CoordinatorConfig): string {
  if (config.store.kind === 'sqlite') return `sqlite ${databaseFile(config)}`;
  const url = postgresUrl(config.store.url);
  if (url === undefined) return 'postgres (unreadable URL)';
  if (url.password !== '') url.password = '***';
  return `postgres ${url.toString()}`;
}

/**
 * One token, one name, one role. A token listed twice (in the clear or by hash) would make its
 * role depend on list order, and a name listed twice makes the audit trail ambiguous.
 */
function refuseDuplicateTokens(tokens: readonly ApiToken[], ctx: z.RefinementCtx): void {
  const byHash = new Map<string, number>();
  const byName = new Map<string, number>();
  tokens.forEach((token, index) => {
    const hash = apiTokenHash(token);
    const sameToken = byHash.get(hash);
    if (sameToken !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `is the same token as apiTokens[${sameToken}] ("${tokens[sameToken]?.name}"): give each token once`,
        path: ['apiTokens', index],
      });
    } else byHash.set(hash, index);
    const sameName = byName.get(token.name);
    if (sameName !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `repeats the name "${token.name}" of apiTokens[${sameName}]: names must be unique`,
        path: ['apiTokens', index, 'name'],
      });
    } else byName.set(token.name, index);
  });
}

export const CoordinatorConfigSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(7420),
    /** Holds the SQLite database (fleetpatch.db, WAL) when the store is SQLite. */
    dataDir: z.string().default('.data/coordinator'),
    /** SQLite unless said (FLEETPATCH_STORE_URL sets a PostgreSQL store). */
    store: StoreConfigSchema.default({ kind: 'sqlite' }),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** API tokens for people and tools. With none configured the API is refused except /healthz. */
    apiTokens: z.array(ApiTokenSchema).default([]),
    /** WebSocket ping interval; an agent that misses one is disconnected. */
    heartbeatIntervalMs: z.number().int().min(100).max(MAX_HEARTBEAT_INTERVAL_MS).default(10_000),
    /** How often deadlines, bakes and windows are checked. */
    tickIntervalMs: z.number().int().min(10).max(60_000).default(1000),
    /**
     * After a start, hosts whose agents have not said hello yet are not timed out, judged offline at
     * dispatch nor have their wave's bake end for this long, and no scheduled start is made: agents
     * come back over their reconnect backoff (30 s at most by default) with what happened meanwhile.
     * 0: judge at once.
     */
    reconnectGraceSeconds: z.number().int().min(0).max(3600).default(60),
    bodyLimitBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(4 * 1024 * 1024),
    /**
     * Requests one HTTP connection may have waiting for their answers (pipelining without reading
     * them); beyond it the connection is dropped. Clients that wait for each answer never have two.
     */
    maxPipelinedRequests: z.number().int().min(1).max(10_000).default(16),
    /**
     * Live event streams (SSE): at most `maxOpen` at once and `maxPerAddress` from one address (429
     * beyond); a reader that leaves more than `maxUnreadBytes` unread is cut — it resumes exactly where
     * it was with `Last-Event-ID`, so nothing is lost and nothing piles up in the coordinator.
     */
    eventStreams: z
      .object({
        maxOpen: z.number().int().min(1).max(100_000).default(1000),
        maxPerAddress: z.number().int().min(1).max(100_000).default(32),
        maxUnreadBytes: z
          .number()
          .int()
          .min(64 * 1024)
          .max(256 * 1024 * 1024)
          .default(4 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    webhooks: z
      .array(WebhookSchema)
      .refine((webhooks) => {
        const names = webhooks.flatMap((webhook) => (webhook.name === undefined ? [] : [webhook.name]));
        return new Set(names).size === names.length;
      }, 'must name each endpoint once')
      .default([]),
    webhookDelivery: WebhookDeliverySchema.prefault({}),
    /**
     * The fewest approvals a rollout may ask for. At 1 or more nobody can skip four eyes by creating a
     * rollout with `requiredApprovals: 0`; 0 lets a single operator run a rollout alone (labs, tests).
     */
    minApprovals: z.number().int().min(0).max(10).default(1),
    // prefault: a partial object given in the file is completed with the defaults above.
    agentLimits: AgentLimitsSchema.prefault({}),
    /**
     * Serve HTTPS and WSS from this certificate (PEM, leaf first, then intermediates) and key. Both are
     * re-read on SIGHUP, so a renewed certificate is picked up without dropping connected agents.
     */
    tls: z
      .object({
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
      })
      .strict()
      .optional(),
    promotion: PromotionSchema.optional(),
    changeRecord: ChangeRecordConfigSchema.prefault({}),
    authFailures: AuthFailuresSchema.default({ maxFailures: 20, windowSeconds: 60, trackedAddresses: 10_000 }),
    metrics: MetricsConfigSchema.prefault({}),
    refusalAudit: RefusalAuditSchema.prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => refuseDuplicateTokens(config.apiTokens, ctx));
export type CoordinatorConfig = z.infer<typeof CoordinatorConfigSchema>;

export function databaseFile(config: CoordinatorConfig): string {
  return join(resolve(config.dataDir), 'fleetpatch.db');
}

/**
 * Resolves the configuration once, at start-up: file (YAML or JSON, by its extension), then environment, then flags, each
 * overriding the one before; the result is validated as a whole. Nothing below main.ts reads env.
 */
export function loadCoordinatorConfig(input: {
  file?: string | undefined;
  env: Record<string, string | undefined>;
  flags: Partial<Record<'host' | 'port' | 'dataDir' | 'logLevel', string>>;
}): CoordinatorConfig {
  const fromFile = input.file ? (parseConfigText(readFileSync(input.file, 'utf8'), input.file) as object) : {};
  const merged: Record<string, unknown> = { ...fromFile };
  /** Where a setting the file may also hold came from, when the environment or a flag gave it: for the error. */
  const given = new Map<string, string>();
  const set = (key: string, value: string | undefined, from: string, number = false) => {
    if (value === undefined || value === '') return;
    merged[key] = number ? Number(value) : value;
    given.set(key, `${from}=${JSON.stringify(value)}`);
  };
  set('host', input.env.FLEETPATCH_HOST, 'FLEETPATCH_HOST');
  set('port', input.env.FLEETPATCH_PORT, 'FLEETPATCH_PORT', true);
  set('dataDir', input.env.FLEETPATCH_DATA_DIR, 'FLEETPATCH_DATA_DIR');
  set('logLevel', input.env.FLEETPATCH_LOG_LEVEL, 'FLEETPATCH_LOG_LEVEL');
  set('host', input.flags.host, '--host');
  set('port', input.flags.port, '--port', true);
  set('dataDir', input.flags.dataDir, '--data-dir');
  set('logLevel', input.flags.logLevel, '--log-level');
  // The environment's URL wins over the file's store, whatever kind the file named.
  if (input.env.FLEETPATCH_STORE_URL) {
    const fromFile = merged.store as Record<string, unknown> | undefined;
    // The URL (it holds a password) from the environment; the file's group settings still apply.
    merged.store = {
      ...(fromFile?.kind === 'postgres' ? fromFile : {}),
      kind: 'postgres',
      url: input.env.FLEETPATCH_STORE_URL,
    };
  }
  if (input.env.FLEETPATCH_COORDINATOR_ID) {
    const store = (merged.store ?? {}) as Record<string, unknown>;
    merged.store = { ...store, coordinatorId: input.env.FLEETPATCH_COORDINATOR_ID };
  }
  if (input.env.FLEETPATCH_TLS_CERT_FILE || input.env.FLEETPATCH_TLS_KEY_FILE) {
    merged.tls = {
      ...(merged.tls as object | undefined),
      ...(input.env.FLEETPATCH_TLS_CERT_FILE ? { certFile: input.env.FLEETPATCH_TLS_CERT_FILE } : {}),
      ...(input.env.FLEETPATCH_TLS_KEY_FILE ? { keyFile: input.env.FLEETPATCH_TLS_KEY_FILE } : {}),
    };
  }
  if (input.env.FLEETPATCH_ADMIN_TOKEN) {
    const tokens = Array.isArray(merged.apiTokens) ? merged.apiTokens : [];
    merged.apiTokens = [...tokens, { name: 'admin', token: input.env.FLEETPATCH_ADMIN_TOKEN, role: 'admin' }];
  }
  const parsed = CoordinatorConfigSchema.safeParse(merged);
  if (!parsed.success) {
    // A clash with the environment's token must say which setting to fix.
    const fromEnv = input.env.FLEETPATCH_ADMIN_TOKEN
      ? `\n(apiTokens[${(merged.apiTokens as unknown[]).length - 1}] is FLEETPATCH_ADMIN_TOKEN)`
      : '';
    // So is one the environment or a flag gave: `port` alone does not say FLEETPATCH_PORT=abc.
    const named = new Set(parsed.error.issues.map((issue) => String(issue.path[0])));
    const fromInput = [...given].filter(([key]) => named.has(key)).map(([key, from]) => `\n(${key} is ${from})`);
    throw new Error(
      `invalid coordinator configuration:\n${z.prettifyError(parsed.error)}${fromEnv}${fromInput.join('')}`,
    );
  }
  return parsed.data;
}
