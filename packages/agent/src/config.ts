import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  AbsolutePathSchema,
  HostIdSchema,
  JoinTokenSecretSchema,
  LabelsSchema,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { checkCaPem, PinSha256Schema } from './coordinator-tls.js';

export const AgentConfigSchema = z
  .object({
    /** Coordinator base URL (http(s):// or ws(s)://); the agent dials `<url>/v1/agents/connect`. */
    coordinatorUrl: z.string().regex(/^(?:ws|wss|http|https):\/\//, 'must be an http(s):// or ws(s):// URL'),
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
      })
      .strict()
      .default({ allowedRoots: ['/etc', '/opt', '/usr/local/etc'] }),
    health: z
      .object({
        /**
         * Absolute paths of the executables `command` health checks may run. Checks run as root with
         * the argv the order names, so an order whose command check is not listed is refused:
         * otherwise a stolen coordinator could run anything on every host. Default: none.
         */
        allowedCommands: z.array(AbsolutePathSchema).default([]),
      })
      .strict()
      .default({ allowedCommands: [] }),
    /** Package patches are off unless this section is present. See AptDriverOptions for each field. */
    apt: z
      .object({
        root: z.string().optional(),
        commandPrefix: z.array(z.string()).optional(),
        dpkgOptions: z.array(z.string()).optional(),
        aptOptions: z.array(z.string()).optional(),
        allowedPackages: z.array(z.string()).optional(),
        stagingDir: z.string().optional(),
        lockTimeoutMs: z.number().int().min(0).optional(),
        commandTimeoutMs: z.number().int().min(1000).optional(),
        env: z.record(z.string(), z.string()).optional(),
      })
      .strict()
      .optional(),
    /** Finished, acknowledged orders (and their snapshots) are kept this long; they can be reverted until then. */
    journalRetentionDays: z.number().min(1).max(3650).default(90),
    backoffBaseMs: z.number().int().min(10).default(500),
    backoffMaxMs: z.number().int().min(100).default(30_000),
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
  .strict()
  .refine((c) => c.allowInsecure || !isInsecureUrl(c.coordinatorUrl), {
    message:
      'an http:// or ws:// coordinator URL is not encrypted: the join token and every order would cross the network in clear. ' +
      'Use https:// (trusting the coordinator with tls.caFile or --ca-file), or for a lab set ' +
      'allowInsecure: true (--allow-insecure, FLEETPATCH_ALLOW_INSECURE=1)',
    path: ['coordinatorUrl'],
  });
export type AgentConfig = z.infer<typeof AgentConfigSchema>;

export interface AgentFlags {
  coordinatorUrl?: string;
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

/** File, then environment, then flags; validated once. Nothing below main.ts reads env. */
export function loadAgentConfig(input: {
  file?: string | undefined;
  env: Record<string, string | undefined>;
  flags: AgentFlags;
}): AgentConfig {
  const merged: Record<string, unknown> = input.file
    ? (JSON.parse(readFileSync(input.file, 'utf8')) as Record<string, unknown>)
    : {};
  const set = (key: string, value: unknown) => {
    if (value !== undefined && value !== '') merged[key] = value;
  };
  set('coordinatorUrl', input.env.FLEETPATCH_COORDINATOR_URL);
  set('hostId', input.env.FLEETPATCH_HOST_ID);
  set('joinToken', input.env.FLEETPATCH_JOIN_TOKEN);
  set('joinTokenFile', input.env.FLEETPATCH_JOIN_TOKEN_FILE);
  set('dataDir', input.env.FLEETPATCH_DATA_DIR);
  set('logLevel', input.env.FLEETPATCH_LOG_LEVEL);
  if (input.env.FLEETPATCH_RECONNECT_MAX_MS) merged.backoffMaxMs = Number(input.env.FLEETPATCH_RECONNECT_MAX_MS);
  if (input.env.FLEETPATCH_ALLOW_INSECURE)
    merged.allowInsecure = /^(?:1|true|yes)$/i.test(input.env.FLEETPATCH_ALLOW_INSECURE);
  const { labels, allowedRoots, caFile, ...flags } = input.flags;
  const caFileSource = caFile ?? input.env.FLEETPATCH_CA_FILE;
  if (caFileSource) merged.tls = { ...(merged.tls as object | undefined), caFile: caFileSource };
  for (const [key, value] of Object.entries(flags)) set(key, value);
  if (labels && Object.keys(labels).length > 0) merged.labels = { ...(merged.labels as object | undefined), ...labels };
  if (allowedRoots && allowedRoots.length > 0) merged.file = { ...(merged.file as object | undefined), allowedRoots };
  const parsed = AgentConfigSchema.safeParse(merged);
  if (!parsed.success) throw new Error(`invalid agent configuration:\n${z.prettifyError(parsed.error)}`);
  const { joinTokenFile, ...config } = parsed.data;
  const joinToken = config.joinToken ?? (joinTokenFile ? readJoinTokenFile(joinTokenFile) : undefined);
  return {
    ...config,
    ...(joinToken ? { joinToken } : {}),
    tls: readCaFile(config.tls),
    dataDir: resolve(config.dataDir),
    rootDir: resolve(config.rootDir),
  };
}

function readJoinTokenFile(file: string): string {
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
