import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  FileChangeSchema,
  fileContentBytes,
  MAX_FILE_CONTENT_BYTES,
  PackageChangeSchema,
  PackageMemberSchema,
  type Patch,
} from './patch.js';
import { Sha256Schema } from './validation.js';

/*
 * A patch as a list shows it: what it is called, who made it when, and what it changes — never the
 * file content. Content can be a megabyte a patch; a list of hundreds of them was a response of
 * hundreds of megabytes that the coordinator validated and stringified in one synchronous step,
 * stalling health checks and agent sockets for everyone while any viewer asked for it. Only
 * `GET /v1/patches/:id` answers a patch whole.
 */

const fileChange = FileChangeSchema.shape;
const packageChange = PackageChangeSchema.shape;

/** A file change without its bytes: they are named by sha256 and length, as statements sign them. */
export const FileChangeSummarySchema = z
  .object({
    kind: z.literal('file'),
    path: fileChange.path,
    mode: fileChange.mode,
    owner: fileChange.owner,
    group: fileChange.group,
    expectedPriorSha256: fileChange.expectedPriorSha256,
    /** sha256 of the decoded bytes the agent writes, whatever their transport encoding. */
    contentSha256: Sha256Schema,
    /** How many bytes the agent writes (decoded). */
    contentBytes: z.number().int().min(0).max(MAX_FILE_CONTENT_BYTES),
  })
  .strict();
export type FileChangeSummary = z.infer<typeof FileChangeSummarySchema>;

/**
 * A package change names packages and versions, which are small anyway; left out are the service
 * restarts and preconditions, which the full patch has.
 */
export const PackageChangeSummarySchema = z
  .object({
    kind: z.literal('package'),
    manager: packageChange.manager,
    name: packageChange.name,
    version: packageChange.version,
    expectedPriorVersion: packageChange.expectedPriorVersion,
    packages: z.array(PackageMemberSchema).optional(),
    source: packageChange.source,
    revertable: z.boolean(),
  })
  .strict();
export type PackageChangeSummary = z.infer<typeof PackageChangeSummarySchema>;

export const ChangeSummarySchema = z.discriminatedUnion('kind', [FileChangeSummarySchema, PackageChangeSummarySchema]);
export type ChangeSummary = z.infer<typeof ChangeSummarySchema>;

export const PatchSummarySchema = z
  .object({
    id: z.string(),
    title: z.string(),
    ticket: z.string(),
    createdBy: z.string(),
    createdAt: z.string(),
    /** The patch's content digest (see `Patch.contentDigest`): equal digests, the same change. */
    contentDigest: z.string(),
    change: ChangeSummarySchema,
  })
  .strict();
export type PatchSummary = z.infer<typeof PatchSummarySchema>;

/** The summary of a patch: computed once, when the patch is stored, so a list never reads content. */
export function patchSummaryOf(patch: Patch): PatchSummary {
  const { id, title, ticket, createdBy, createdAt, contentDigest } = patch;
  return { id, title, ticket, createdBy, createdAt, contentDigest, change: changeSummaryOf(patch.change) };
}

/**
 * Field by field, not the change less its content: a field the change gains later is not listed
 * until it is added here and to the summary's schema (strict, so it would fail the answer instead).
 */
function changeSummaryOf(change: Patch['change']): ChangeSummary {
  switch (change.kind) {
    case 'file': {
      const { path, mode, owner, group, expectedPriorSha256 } = change;
      const bytes = fileContentBytes(change);
      return {
        kind: 'file',
        path,
        mode,
        owner,
        group,
        ...(expectedPriorSha256 !== undefined && { expectedPriorSha256 }),
        contentSha256: createHash('sha256').update(bytes).digest('hex'),
        contentBytes: bytes.byteLength,
      };
    }
    case 'package': {
      const { manager, name, version, expectedPriorVersion, packages, source, revertable } = change;
      return {
        kind: 'package',
        manager,
        ...(name !== undefined && { name }),
        ...(version !== undefined && { version }),
        ...(expectedPriorVersion !== undefined && { expectedPriorVersion }),
        ...(packages !== undefined && { packages }),
        ...(source !== undefined && { source }),
        revertable,
      };
    }
  }
}
