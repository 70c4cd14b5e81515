import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  AbsolutePathSchema,
  HostIdSchema,
  JoinTokenSecretSchema,
  LabelsSchema,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  parseConfigText,
  ServiceUnitSchema,
  SignerRoleSchema,
  TrustedKeySchema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { CREDENTIAL_FILE } from './agent-credential.js';
import { checkCaPem, PinSha256Schema } from './coordinator-tls.js';
import { DEFAULT_ALLOWED_DESTINATIONS, parseDestination } from './policy/allowed-destinations.js';
import { DEFAULT_JOURNAL_QUOTA } from './policy/journal-quota.js';

/** A coordinator base URL (http(s):// or ws(s)://); the agent dials `<url>/v1/agents/connect`. */
const CoordinatorUrlSchema = z.string().regex(/^(?:ws|wss|http|https):\/\//, 'must be an http(s):// or ws(s):// URL');

/** More would only lengthen a failover round; a bigger group belongs behind one address (a load balancer). */
export const MAX_COORDINATOR_URLS = 16;

const INSECURE_URL_MESSAGE =
  'an http:// or ws:// coordinator URL is not encrypted: the join token and every order would cross the network in clear. ' +
  'Use https:// (trusting the coordinator with tls.caFile or --ca-file), or for a lab set ' +
  'allowInsecure: true (--allow-insecure, FLEETPATCH_ALLOW_INSECURE=1)';

const AgentConfigFields = z
  .object({
    /** One coordinator, or one address in front of a group of them: the same as `coordinatorUrls` of one. */
    coordinatorUrl: CoordinatorUrlSchema.optional(),
    /**
     * The coordinators of one group (sharing one store), tried in this order: the agent moves to the next
     * on a failed or dropped connection (coordinator-rotation.ts). Every one must pass the same TLS trust.
     */
    coordinatorUrls: z
      .array(CoordinatorUrlSchema)
      .min(1)
      .max(MAX_COORDINATOR_URLS)
      .refine((urls) => new Set(urls).size === urls.length, 'lists a URL twice')
      .optional(),
    /**
     * The id this host enrolls as (default: its hostname, as in its facts). Once enrolled, the id in the
     * credential file is the one that counts; naming another here is a configuration error.
     */
    hostId: HostIdSchema.optional(),
    /**
     * A join token from `fleetpatch join-token create`, used once, when the agent has no credential
     * yet (`<dataDir>/credential.json`). Give it in a file or the environment, never on the command line.
     */
    joinToken: JoinTokenSecretSchema.optional(),
    joinTokenFile: z.string().optional(),
    labels: LabelsSchema.default({}),
    /** Journal and snapshots live here; it must survive reboots (`/var/lib/fleetpatch-agent`). */
    dataDir: z.string().default('/var/lib/fleetpatch-agent'),
    /**
     * The directory that stands for `/` when file patches are applied. `/` in production; a
     * scratch directory for demos and tests, so nothing outside it is touched.
     */
    rootDir: z.string().default('/'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    file: z
      .object({
        /** File patches may only touch paths under these (patch-space) directories. */
        allowedRoots: z
          .array(AbsolutePathSchema.or(z.literal('/')))
          .min(1)
          .default(['/etc', '/opt', '/usr/local/etc']),
        /**
         * Paths that hand out root (policy/sensitive-paths.ts: sudoers, cron, ld.so, PAM, sshd_config,
         * /root, systemd units, …) are refused whatever the roots, unless listed here one by one, exactly.
         */
        allowedSensitivePaths: z.array(AbsolutePathSchema).default([]),
        /** When given, file patches may only name these owners (names or numeric ids). Default: any. */
        allowedOwners: z.array(z.string().min(1)).optional(),
        /** When given, file patches may only name these groups (names or numeric ids). Default: any. */
        allowedGroups: z.array(z.string().min(1)).optional(),
        /** setuid, setgid and sticky modes are refused unless this is true (and the patch says so too). */
        allowSpecialModes: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    health: z
      .object({
        /**
         * The `command` health checks this agent runs, each by its full argv: `["/usr/local/bin/check", "--quick"]`
         * exactly; a string is an argv of that program alone, with no arguments; `{argvPrefix, allowedArgs}` is
         * the prefix followed by any of `allowedArgs`. Checks run as root. Default: none.
         */
        allowedCommands: z
          .array(
            z.union([
              AbsolutePathSchema,
              z.array(z.string().min(1)).min(1),
              z
                .object({ argvPrefix: z.array(z.string().min(1)).min(1), allowedArgs: z.array(z.string().min(1)) })
                .strict(),
            ]),
          )
          .default([]),
        /**
         * Where `http` and `tcp` checks may connect: addresses, CIDRs or host names, each with an optional
         * `:port` (`[v6]:port`). A name must be listed and resolve to a listed address. Default: loopback.
         */
        allowedDestinations: z
          .array(z.string().min(1))
          .default([...DEFAULT_ALLOWED_DESTINATIONS])
          .superRefine((patterns, ctx) => {
            for (const pattern of patterns) {
              try {
                parseDestination(pattern);
              } catch (err) {
                ctx.addIssue({ code: 'custom', message: (err as Error).message });
              }
            }
          }),
        /** Where `file` checks may look (default: file.allowedRoots); the sensitive paths stay refused. */
        allowedFileRoots: z
          .array(AbsolutePathSchema.or(z.literal('/')))
          .min(1)
          .optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Services after a change: the units a patch may restart (exactly these; default none), how
     * systemctl is run, and how stale processes are found (services/ in the agent).
     */
    services: z
      .object({
        allowedUnits: z.array(ServiceUnitSchema).default([]),
        /** The program (and arguments before the verb) that restarts a unit. Default `["systemctl"]`. */
        systemctl: z.array(z.string().min(1)).min(1).default(['systemctl']),
        /** Upper bound of one restart. Default 90 s. */
        restartTimeoutMs: z.number().int().min(1000).max(3_600_000).default(90_000),
        /** Where processes are read from (their maps and cgroups). Default `/proc`. */
        procDir: z.string().min(1).default('/proc'),
        /** `needrestart -b` when this program exists (`auto`, the default), or never (`off`). */
        needrestart: z.enum(['auto', 'off']).default('auto'),
      })
      .strict()
      .prefault({}),
    /** Package patches are off unless this section is present. See AptDriverOptions for each field. */
    apt: z
      .object({
        root: z.string().optional(),
        commandPrefix: z.array(z.string()).optional(),
        dpkgOptions: z.array(z.string()).optional(),
        aptOptions: z.array(z.string()).optional(),
        /** Required (this or allowedSourcePackages): the packages apt changes may name. */
        allowedPackages: z.array(z.string()).optional(),
        /** Packages built from these source packages (per the apt indexes) are allowed too. */
        allowedSourcePackages: z.array(z.string()).optional(),
        /** A version lower than the installed one is refused unless this is true. */
        allowDowngrade: z.boolean().default(false),
        stagingDir: z.string().optional(),
        lockTimeoutMs: z.number().int().min(0).optional(),
        commandTimeoutMs: z.number().int().min(1000).optional(),
        env: z.record(z.string(), z.string()).optional(),
      })
      .strict()
      .refine((apt) => (apt.allowedPackages?.length ?? 0) + (apt.allowedSourcePackages?.length ?? 0) > 0, {
        message:
          'with apt enabled, list the packages it may change (apt.allowedPackages and/or apt.allowedSourcePackages)',
        path: ['allowedPackages'],
      })
      .optional(),
    /**
     * The package inventory this agent reports (protocol 3): the installed packages of a dpkg root,
     * read with dpkg-query at start and again after every change of its status file, which is watched.
     * An agent whose root has no dpkg database reports none, and says so.
     */
    inventory: z
      .object({
        enabled: z.boolean().default(true),
        /** The dpkg root whose database is reported (`<root>/var/lib/dpkg`). Default: `apt.root`, else `/`. */
        dpkgRoot: z.string().min(1).optional(),
        /** Quiet time after a change of the database before it is read again: a dpkg run writes it many times. */
        debounceMs: z.number().int().min(0).max(600_000).default(2000),
      })
      .strict()
      .prefault({}),
    /** Quotas of the order journal, checked before an order is journaled (over quota: refused, `blocked`). */
    journal: z
      .object({
        maxOrders: z.number().int().min(1).default(DEFAULT_JOURNAL_QUOTA.maxOrders),
        maxBytes: z.number().int().min(1024).default(DEFAULT_JOURNAL_QUOTA.maxBytes),
      })
      .strict()
      .prefault({}),
    /**
     * Signed orders (signed-statement.ts). Absent: orders need no signature (the lab default).
     * Present: every apply and every revert order must carry a statement signed by
     * `requiredSignatures` distinct trusted keys covering `requireRoles`, whatever protocol version
     * the coordinator speaks (rollouts are signed with the CLI's `--sign-key`).
     */
    signing: z
      .object({
        trustedKeys: z.array(TrustedKeySchema).min(1).max(100),
        requiredSignatures: z.number().int().min(1).max(10).default(2),
        requireRoles: z.array(SignerRoleSchema).max(10).default(['author', 'approver']),
        /** How far this host's clock may be off when judging a statement's notBefore and expiresAt. */
        clockSkewSeconds: z.number().int().min(0).max(3600).default(300),
      })
      .strict()
      .refine((s) => s.requireRoles.length <= s.requiredSignatures, {
        message: 'must be at least the number of requireRoles',
        path: ['requiredSignatures'],
      })
      .optional(),
    /**
     * The agent's metrics as a file for node_exporter's textfile collector: give `textfile` (a path
     * ending in `.prom`, in the collector's directory) and it is rewritten atomically every
     * `intervalSeconds` (default 15). Absent: no metrics. No port is opened either way.
     */
    metrics: z
      .object({
        textfile: AbsolutePathSchema.refine((path) => path.endsWith('.prom'), 'must end in .prom').optional(),
        intervalSeconds: z.number().int().min(1).max(3600).default(15),
      })
      .strict()
      .prefault({}),
    /** Finished, acknowledged orders (and their snapshots) are kept this long; they can be reverted until then. */
    journalRetentionDays: z.number().min(1).max(3650).default(90),
    backoffBaseMs: z.number().int().min(10).default(500),
    backoffMaxMs: z.number().int().min(100).default(30_000),
    /**
     * An order's progress reports after its first are held this long and only the newest is sent; its
     * result drops them (see progress-coalescer.ts). 0 sends every report at once.
     */
    progressCoalesceMs: z.number().int().min(0).max(10_000).default(200),
    /**
     * A result the coordinator has not acknowledged this long after it was sent is sent again, then after
     * twice as long, up to 16 times as long (see result-resend.ts); checked at each heartbeat.
     */
    resultResendMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /** How the coordinator's certificate is checked on https:// and wss:// (the chain and host name always are). */
    tls: z
      .object({
        /** PEM CA certificate(s) trusted for the coordinator instead of the system store. Or give `ca`. */
        caFile: z.string().min(1).optional(),
        ca: z.string().min(1).optional(),
        /** SHA-256 fingerprint of the coordinator's own (leaf) certificate, hex, colons optional. */
        pinSha256: PinSha256Schema.optional(),
      })
      .strict()
      .refine((t) => t.ca === undefined || t.caFile === undefined, 'give ca or caFile, not both')
      .default({}),
    /**
     * The oldest wire protocol version this agent accepts from a coordinator (default: the oldest it
     * speaks). Once every coordinator speaks a newer version, raise it (2 now) so that no coordinator
     * (an old one restored from a backup, say) can talk the agent
     * down to a version that lacks what the newer one enforces; it is refused with 4426 instead.
     */
    minProtocolVersion: z.number().int().min(MIN_PROTOCOL_VERSION).max(PROTOCOL_VERSION).default(MIN_PROTOCOL_VERSION),
    /** Allows http:// and ws:// coordinator URLs, where the token and every order cross the network in clear. */
    allowInsecure: z.boolean().default(false),
  })
  .strict();

/**
 * The agent's configuration, with its coordinators always as `coordinatorUrls` (a list of one when the
 * file said `coordinatorUrl`), so nothing downstream handles two shapes.
 */
export const AgentConfigSchema = AgentConfigFields.superRefine((c, ctx) => {
  if (c.coordinatorUrl !== undefined && c.coordinatorUrls !== undefined) {
    ctx.addIssue({
      code: 'custom',
      message: 'give coordinatorUrl (one) or coordinatorUrls (a list), not both',
      path: ['coordinatorUrls'],
    });
    return;
  }
  if (c.coordinatorUrl === undefined && c.coordinatorUrls === undefined) {
    ctx.addIssue({ code: 'custom', message: 'required (or coordinatorUrls, a list)', path: ['coordinatorUrl'] });
    return;
  }
  if (c.allowInsecure) return;
  if (c.coordinatorUrl !== undefined && isInsecureUrl(c.coordinatorUrl)) {
    ctx.addIssue({ code: 'custom', message: INSECURE_URL_MESSAGE, path: ['coordinatorUrl'] });
  }
  for (const [index, url] of (c.coordinatorUrls ?? []).entries()) {
    if (isInsecureUrl(url))
      ctx.addIssue({ code: 'custom', message: INSECURE_URL_MESSAGE, path: ['coordinatorUrls', index] });
  }
}).transform(({ coordinatorUrl, coordinatorUrls, ...rest }) => ({
  ...rest,
  coordinatorUrls: coordinatorUrls ?? [coordinatorUrl as string],
}));
export type AgentConfig = z.infer<typeof AgentConfigSchema>;

export interface AgentFlags {
  /** `--coordinator`, repeatable: one URL, or the coordinators of a group. */
  coordinatorUrls?: string[];
  hostId?: string;
  joinTokenFile?: string;
  dataDir?: string;
  rootDir?: string;
  logLevel?: string;
  labels?: Record<string, string>;
  allowedRoots?: string[];
  caFile?: string;
  allowInsecure?: boolean;
}

/** File (YAML or JSON, by its extension), then environment, then flags; validated once. Nothing below main.ts reads env. */
export function loadAgentConfig(input: {
  file?: string | undefined;
  env: Record<string, string | undefined>;
  flags: AgentFlags;
}): AgentConfig {
  const merged: Record<string, unknown> = input.file
    ? { ...(parseConfigText(readFileSync(input.file, 'utf8'), input.file) as object) }
    : {};
  const set = (key: string, value: unknown) => {
    if (value !== undefined && value !== '') merged[key] = value;
  };
  const { FLEETPATCH_COORDINATOR_URL: envUrl, FLEETPATCH_COORDINATOR_URLS: envUrls } = input.env;
  if (envUrl && envUrls) {
    throw new Error(
      'invalid agent configuration: give FLEETPATCH_COORDINATOR_URL or FLEETPATCH_COORDINATOR_URLS, not both',
    );
  }
  if (envUrl) setCoordinators(merged, { coordinatorUrl: envUrl });
  // Comma-separated; spaces around a comma are not part of a URL. An empty entry stays, and is refused.
  if (envUrls) setCoordinators(merged, { coordinatorUrls: envUrls.split(',').map((url) => url.trim()) });
  set('hostId', input.env.FLEETPATCH_HOST_ID);
  set('joinToken', input.env.FLEETPATCH_JOIN_TOKEN);
  set('joinTokenFile', input.env.FLEETPATCH_JOIN_TOKEN_FILE);
  set('dataDir', input.env.FLEETPATCH_DATA_DIR);
  set('logLevel', input.env.FLEETPATCH_LOG_LEVEL);
  if (input.env.FLEETPATCH_RECONNECT_MAX_MS) merged.backoffMaxMs = Number(input.env.FLEETPATCH_RECONNECT_MAX_MS);
  if (input.env.FLEETPATCH_PROGRESS_COALESCE_MS)
    merged.progressCoalesceMs = Number(input.env.FLEETPATCH_PROGRESS_COALESCE_MS);
  if (input.env.FLEETPATCH_RESULT_RESEND_MS) merged.resultResendMs = Number(input.env.FLEETPATCH_RESULT_RESEND_MS);
  if (input.env.FLEETPATCH_ALLOW_INSECURE)
    merged.allowInsecure = /^(?:1|true|yes)$/i.test(input.env.FLEETPATCH_ALLOW_INSECURE);
  const { labels, allowedRoots, caFile, coordinatorUrls, ...flags } = input.flags;
  // One --coordinator stays `coordinatorUrl`, so that an error names the key the person thinks in.
  if (coordinatorUrls?.length === 1) setCoordinators(merged, { coordinatorUrl: coordinatorUrls[0] });
  else if (coordinatorUrls && coordinatorUrls.length > 1) setCoordinators(merged, { coordinatorUrls });
  const caFileSource = caFile ?? input.env.FLEETPATCH_CA_FILE;
  if (caFileSource) merged.tls = { ...(merged.tls as object | undefined), caFile: caFileSource };
  for (const [key, value] of Object.entries(flags)) set(key, value);
  if (labels && Object.keys(labels).length > 0) merged.labels = { ...(merged.labels as object | undefined), ...labels };
  if (allowedRoots && allowedRoots.length > 0) merged.file = { ...(merged.file as object | undefined), allowedRoots };
  const parsed = AgentConfigSchema.safeParse(merged);
  if (!parsed.success) throw new Error(`invalid agent configuration:\n${z.prettifyError(parsed.error)}`);
  const { joinTokenFile, ...config } = parsed.data;
  const enrolled = existsSync(join(resolve(config.dataDir), CREDENTIAL_FILE));
  const joinToken = config.joinToken ?? (joinTokenFile ? readJoinTokenFile(joinTokenFile, enrolled) : undefined);
  return {
    ...config,
    ...(joinToken ? { joinToken } : {}),
    tls: readCaFile(config.tls),
    dataDir: resolve(config.dataDir),
    rootDir: resolve(config.rootDir),
  };
}

/** A later source (environment, then flags) replaces the coordinators an earlier one gave, whichever key that used. */
function setCoordinators(
  merged: Record<string, unknown>,
  given: { coordinatorUrl: string | undefined } | { coordinatorUrls: string[] },
): void {
  delete merged.coordinatorUrl;
  delete merged.coordinatorUrls;
  Object.assign(merged, given);
}

function readJoinTokenFile(file: string, enrolled: boolean): string {
  // As the CLI refuses a token file others can read: whoever reads a join token can enroll as the host.
  // Once the agent is enrolled the token is spent and never sent: a file left behind does not stop it.
  const mode = statSync(file).mode & 0o777;
  if (!enrolled && (mode & 0o077) !== 0) {
    throw new Error(
      `invalid agent configuration: join token file ${file} is readable by others (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${file}`,
    );
  }
  const token = readFileSync(file, 'utf8').trim();
  const parsed = JoinTokenSecretSchema.safeParse(token);
  // Never echo the file's content: it may be a secret of another kind.
  if (!parsed.success) throw new Error(`invalid agent configuration: ${file} does not hold a join token (fpj_…)`);
  return parsed.data;
}

/** Read once, at start: a renewed CA needs an agent restart, a missing one is a configuration error. */
function readCaFile(tls: AgentConfig['tls']): AgentConfig['tls'] {
  if (tls.caFile === undefined) return tls;
  let ca: string;
  try {
    ca = readFileSync(tls.caFile, 'utf8');
  } catch (err) {
    throw new Error(
      `cannot read tls.caFile ${tls.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  checkCaPem(ca, tls.caFile);
  return { ...tls, ca };
}

/** http:// and ws://: no TLS, so the token and orders travel in clear. */
export function isInsecureUrl(coordinatorUrl: string): boolean {
  return /^(?:ws|http):/i.test(coordinatorUrl);
}

export function agentSocketUrl(coordinatorUrl: string): string {
  const url = new URL(coordinatorUrl);
  url.protocol = url.protocol === 'https:' || url.protocol === 'wss:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/$/, '')}/v1/agents/connect`;
  return url.toString();
}
