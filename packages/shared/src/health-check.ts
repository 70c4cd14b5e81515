import { z } from 'zod';
import { AbsolutePathSchema, Sha256Schema } from './validation.js';
import { WIRE_LIMITS } from './wire-limits.js';

const timeoutMs = z.number().int().min(100).max(300_000).default(5_000);
const checkName = z.string().min(1).max(100).optional();

/** Runs argv with execFile (never a shell); exit 0 is healthy. Output is captured and capped. */
export const CommandCheckSchema = z
  .object({
    kind: z.literal('command'),
    name: checkName,
    argv: z.array(z.string().min(1).max(4096)).min(1).max(64),
    timeoutMs,
  })
  .strict();

export const HttpCheckSchema = z
  .object({
    kind: z.literal('http'),
    name: checkName,
    url: z.url({ protocol: /^https?$/ }),
    expectStatus: z
      .object({ min: z.number().int().min(100).max(599), max: z.number().int().min(100).max(599) })
      .strict()
      .refine((range) => range.min <= range.max, { message: 'must be at most expectStatus.max', path: ['min'] })
      .default({ min: 200, max: 399 }),
    bodyContains: z.string().max(1024).optional(),
    timeoutMs,
  })
  .strict();

export const TcpCheckSchema = z
  .object({
    kind: z.literal('tcp'),
    name: checkName,
    host: z.string().min(1).max(253),
    port: z.number().int().min(1).max(65535),
    timeoutMs,
  })
  .strict();

export const SystemdCheckSchema = z
  .object({
    kind: z.literal('systemd'),
    name: checkName,
    unit: z.string().regex(/^[A-Za-z0-9:_.@\\-]+$/, 'must be a systemd unit name'),
    timeoutMs,
  })
  .strict();

export const ProcessCheckSchema = z
  .object({
    kind: z.literal('process'),
    name: checkName,
    processName: z.string().min(1).max(255),
  })
  .strict();

export const FileCheckSchema = z
  .object({
    kind: z.literal('file'),
    name: checkName,
    path: AbsolutePathSchema,
    sha256: Sha256Schema.optional(),
  })
  .strict();

export const MetricCheckSchema = z
  .object({
    kind: z.literal('metric'),
    name: checkName,
    metric: z.enum(['cpu_load_percent', 'memory_used_percent', 'disk_used_percent']),
    /** For disk_used_percent: the mount point to read. */
    mount: AbsolutePathSchema.or(z.literal('/')).optional(),
    max: z.number().min(0).max(100),
  })
  .strict();

export const HealthCheckSchema = z.discriminatedUnion('kind', [
  CommandCheckSchema,
  HttpCheckSchema,
  TcpCheckSchema,
  SystemdCheckSchema,
  ProcessCheckSchema,
  FileCheckSchema,
  MetricCheckSchema,
]);
export type HealthCheck = z.infer<typeof HealthCheckSchema>;
export type HealthCheckKind = HealthCheck['kind'];

/** How the agent judges a host after it applied the change. */
export const HealthPolicySchema = z
  .object({
    checks: z.array(HealthCheckSchema).max(32).default([]),
    /** Seconds between polls of every check. */
    intervalSeconds: z.number().min(0.1).max(300).default(2),
    /** Checks must pass continuously this long before the host is healthy. */
    minHealthySeconds: z.number().min(0).max(3600).default(0),
    /** Give up (and revert) if the host is not healthy this long after apply. */
    healthyDeadlineSeconds: z.number().min(1).max(7200).default(60),
    /**
     * Fail fast: while verifying, the host fails (and reverts) after this many polls in a row with a
     * failing check, instead of waiting out `healthyDeadlineSeconds`. Absent: only the deadline fails
     * it. Protocol 5 (an older agent is sent no order with it).
     */
    failAfterConsecutive: z.number().int().min(1).max(10_000).optional(),
    /**
     * During the bake: the host fails (and reverts) once `consecutiveFailures` polls in a row had a
     * failing check; a passing poll starts the count again. Absent: `{consecutiveFailures: 1}`, the
     * first failed poll. Protocol 5.
     */
    bakeTolerance: z
      .object({ consecutiveFailures: z.number().int().min(1).max(10_000) })
      .strict()
      .optional(),
  })
  .strict()
  // A policy that cannot be met would revert every host it touches: refuse it before it runs.
  .superRefine((policy, ctx) => {
    if (policy.minHealthySeconds > policy.healthyDeadlineSeconds) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be at most healthyDeadlineSeconds',
        path: ['minHealthySeconds'],
      });
    }
    if (policy.intervalSeconds > policy.healthyDeadlineSeconds) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be at most healthyDeadlineSeconds (no poll would happen before the deadline)',
        path: ['intervalSeconds'],
      });
    }
  });
export type HealthPolicy = z.infer<typeof HealthPolicySchema>;

/** The bake fails after this many failing polls in a row when the policy names no `bakeTolerance`. */
export const DEFAULT_BAKE_CONSECUTIVE_FAILURES = 1;

/** How many failing polls in a row fail a host during its bake. */
export function bakeFailuresAllowed(policy: Pick<HealthPolicy, 'bakeTolerance'>): number {
  return policy.bakeTolerance?.consecutiveFailures ?? DEFAULT_BAKE_CONSECUTIVE_FAILURES;
}

/** A report inside agent frames: unknown fields from a newer agent are stripped, not refused (protocol.ts). */
export const HealthCheckResultSchema = z.object({
  check: z.string(),
  kind: z.string(),
  ok: z.boolean(),
  /** What the check saw, short and human-readable ("HTTP 500", "exit 1: connection refused"). */
  observed: z.string().max(WIRE_LIMITS.observedChars),
  at: z.string(),
});
export type HealthCheckResult = z.infer<typeof HealthCheckResultSchema>;

/** The reason an agent gives when the checks fail before it changed anything (skipped, health_failed). */
export const UNHEALTHY_BEFORE_PATCH = 'unhealthy before patch';
