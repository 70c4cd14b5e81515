import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';
import { HealthPolicySchema } from './health-check.js';
import { type NewPatchInput, NewPatchSchema, type Patch, type PatchSpec, PatchSpecSchema } from './patch.js';
import { SignedChangeSchema, signedPatchOf } from './signed-statement.js';

/**
 * The content digest of a patch: sha256 of the canonical JSON of what the agent executes — the
 * change as statements sign it (file content by its sha256) and the health policy. Prose and the
 * change record are left out: a patch re-created with a better description is still the change that
 * passed staging, and one with other bytes is not, whatever it is called.
 */
export function patchContentDigest(spec: PatchSpec): string {
  const parsed = PatchSpecSchema.parse(spec);
  const { change, health } = signedPatchOf(parsed);
  const executed = { change: SignedChangeSchema.parse(change), health: HealthPolicySchema.parse(health) };
  return createHash('sha256').update(canonicalJson(executed), 'utf8').digest('hex');
}

/** A patch as stored: the parsed spec and record, who made it when, and its content digest. */
export function storedPatch(input: NewPatchInput, meta: { id: string; createdBy: string; createdAt: string }): Patch {
  const parsed = NewPatchSchema.parse(input);
  const { record: _record, ...spec } = parsed;
  return { ...parsed, ...meta, contentDigest: patchContentDigest(spec) };
}
