import { z } from 'zod';
import { HealthPolicySchema } from './health-check.js';
import { AbsolutePathSchema, DebianPackageNameSchema, DebianVersionSchema, Sha256Schema } from './validation.js';

/** Upper bound of inline file content, in bytes once decoded. */
export const MAX_FILE_CONTENT_BYTES = 1024 * 1024;

const OwnerSchema = z
  .string()
  .regex(/^(?:[a-z_][a-z0-9_-]{0,31}\$?|\d{1,10})$/, 'must be a user/group name or a numeric id');

/**
 * One managed file. `content` is the whole new file; `expectedPriorSha256` guards against drift:
 * if the host's current file is not what the operator expected, the order is refused.
 */
export const FileChangeSchema = z
  .object({
    kind: z.literal('file'),
    path: AbsolutePathSchema,
    content: z.string(),
    encoding: z.enum(['utf8', 'base64']).default('utf8'),
    mode: z.string().regex(/^0?[0-7]{3,4}$/, 'must be an octal mode such as "0644"'),
    owner: OwnerSchema,
    group: OwnerSchema,
    expectedPriorSha256: z.union([Sha256Schema, z.literal('absent')]).optional(),
    /**
     * Absent means false: a mode with setuid, setgid or sticky bits is refused unless the patch says
     * so out loud — the agent runs as root, so a stray "4755" would be a root shell for anyone.
     */
    allowSpecialModes: z.boolean().optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.encoding === 'base64' && !isCanonicalBase64(c.content)) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be canonical base64 (A-Z a-z 0-9 + /, padded with =, no whitespace)',
        path: ['content'],
      });
    } else if (fileContentBytes(c).byteLength > MAX_FILE_CONTENT_BYTES) {
      ctx.addIssue({
        code: 'custom',
        message: `content must be at most ${MAX_FILE_CONTENT_BYTES} bytes`,
        path: ['content'],
      });
    }
    if ((parseMode(c.mode) & SPECIAL_MODE_BITS) !== 0 && c.allowSpecialModes !== true) {
      ctx.addIssue({
        code: 'custom',
        message: 'has setuid, setgid or sticky bits: set allowSpecialModes: true if that is meant',
        path: ['mode'],
      });
    }
  });
export type FileChange = z.infer<typeof FileChangeSchema>;

/** One apt package pinned to an exact version. */
export const PackageChangeSchema = z
  .object({
    kind: z.literal('package'),
    manager: z.literal('apt'),
    name: DebianPackageNameSchema,
    version: DebianVersionSchema,
    expectedPriorVersion: z.union([DebianVersionSchema, z.literal('absent')]).optional(),
    /** Set false only to allow a change whose prior .deb cannot be captured (then it cannot revert). */
    revertable: z.boolean().default(true),
  })
  .strict();
export type PackageChange = z.infer<typeof PackageChangeSchema>;

export const ChangeSchema = z.discriminatedUnion('kind', [FileChangeSchema, PackageChangeSchema]);
export type Change = z.infer<typeof ChangeSchema>;

export function fileContentBytes(change: { content: string; encoding: 'utf8' | 'base64' }): Buffer {
  // Stryker disable next-line StringLiteral: Buffer.from decodes as UTF-8 when no encoding is named
  return Buffer.from(change.content, change.encoding === 'base64' ? 'base64' : 'utf8');
}

/** setuid, setgid and sticky. */
const SPECIAL_MODE_BITS = 0o7000;

/**
 * Node's base64 decoder skips what it does not understand, so garbage decodes to some bytes; only a
 * string that re-encodes to itself says exactly the bytes the operator meant.
 */
export function isCanonicalBase64(text: string): boolean {
  return Buffer.from(text, 'base64').toString('base64') === text;
}

export function parseMode(mode: string): number {
  return Number.parseInt(mode, 8);
}

const Prose = z.string().trim().min(1).max(10_000);

/** What an operator submits: the single-patch discipline in one object. */
export const PatchSpecSchema = z
  .object({
    title: z.string().trim().min(1).max(200),
    problem: Prose,
    rootCause: Prose,
    intendedFix: Prose,
    ticket: z.string().trim().min(1).max(200),
    change: ChangeSchema,
    health: HealthPolicySchema.default({
      checks: [],
      intervalSeconds: 2,
      minHealthySeconds: 0,
      healthyDeadlineSeconds: 60,
    }),
  })
  .strict();
export type PatchSpec = z.infer<typeof PatchSpecSchema>;
export type PatchSpecInput = z.input<typeof PatchSpecSchema>;

export const PatchSchema = PatchSpecSchema.extend({
  id: z.string(),
  createdBy: z.string(),
  createdAt: z.string(),
});
export type Patch = z.infer<typeof PatchSchema>;
