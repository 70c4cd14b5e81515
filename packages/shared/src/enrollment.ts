import { z } from 'zod';
import { AgentPublicKeySchema, SignatureSchema } from './agent-proof.js';
import { HostIdSchema, LabelsSchema } from './validation.js';

/**
 * Enrollment: an admin issues a short-lived join token; an agent presents it once, with a public key
 * it generated itself, and from then on proves possession of the private key on every connect. The
 * coordinator keeps the join token's sha256 and the agent's public key, nothing that could speak for
 * a host.
 */

/** Join tokens are shown once, at creation; `fpj_` + 32 random bytes, base64url. */
export const JoinTokenSecretSchema = z.string().regex(/^fpj_[A-Za-z0-9_-]{43}$/, 'not a join token');

const IsoTimeSchema = z.string();

export const JoinTokenRequestSchema = z
  .object({
    /** How many agents may enroll with it (1: single-use). */
    uses: z.number().int().min(1).max(100_000).default(1),
    /** Seconds until it stops working; short by default, 30 days at most. */
    expiresInSeconds: z
      .number()
      .int()
      .min(60)
      .max(30 * 24 * 3600)
      .default(3600),
    /** Labels every agent enrolled with it carries, whatever the agent reports (they win). */
    labels: LabelsSchema.default({}),
    /** Only this host id may enroll with it. */
    hostId: HostIdSchema.optional(),
    /**
     * Allows re-enrolling `hostId` although it is already enrolled (its old key stops working at once):
     * the explicit, audited way to give a host a new identity. Needs `hostId`.
     */
    replace: z.boolean().default(false),
    description: z.string().trim().max(200).optional(),
  })
  .strict()
  .refine((r) => !r.replace || r.hostId !== undefined, {
    message: 'replace needs hostId: name the one host whose credential is replaced',
    path: ['replace'],
  });
export type JoinTokenRequest = z.infer<typeof JoinTokenRequestSchema>;
export type JoinTokenRequestInput = z.input<typeof JoinTokenRequestSchema>;

export const JOIN_TOKEN_STATES = ['active', 'used_up', 'expired', 'revoked'] as const;

export const JoinTokenViewSchema = z
  .object({
    id: z.string(),
    description: z.string().nullable(),
    createdBy: z.string(),
    createdAt: IsoTimeSchema,
    expiresAt: IsoTimeSchema,
    maxUses: z.number().int(),
    uses: z.number().int(),
    labels: LabelsSchema,
    hostId: HostIdSchema.nullable(),
    replace: z.boolean(),
    revokedAt: IsoTimeSchema.nullable(),
    state: z.enum(JOIN_TOKEN_STATES),
  })
  .strict();
export type JoinTokenView = z.infer<typeof JoinTokenViewSchema>;

/** The answer to creating a join token: the only time its secret is shown. */
export const JoinTokenCreatedSchema = JoinTokenViewSchema.extend({ token: JoinTokenSecretSchema }).strict();
export type JoinTokenCreated = z.infer<typeof JoinTokenCreatedSchema>;

export const JoinTokenListSchema = z.object({ joinTokens: z.array(JoinTokenViewSchema) }).strict();
export type JoinTokenList = z.infer<typeof JoinTokenListSchema>;

/** `POST /v1/enroll`, authenticated by `Authorization: Bearer fpj_…`. */
export const EnrollRequestSchema = z
  .object({
    hostId: HostIdSchema,
    publicKey: AgentPublicKeySchema,
    /** Signature of `enrollProofPayload(hostId, publicKey)`: the caller holds the private key. */
    proof: SignatureSchema,
  })
  .strict();
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

export const EnrollResultSchema = z
  .object({ hostId: HostIdSchema, labels: LabelsSchema, replaced: z.boolean() })
  .strict();
export type EnrollResult = z.infer<typeof EnrollResultSchema>;
