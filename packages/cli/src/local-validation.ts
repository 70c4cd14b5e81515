import { type NewPatchInput, NewPatchSchema, type RolloutRequestInput, RolloutRequestSchema } from '@fleetpatch/shared';
import { LocalValidationError, toFieldIssues } from './cli-errors.js';

// The same schemas the coordinator parses with: a request that fails here would fail there, so
// it is refused before anything is sent. What is sent is the input as written (the server
// applies the defaults), so the stored record is exactly what the operator described.

/** Where a field of the input was written (json-input.ts), so an error names file, line and field. */
type Locate = (path: readonly PropertyKey[]) => string | undefined;

/** A patch as `patch create` sends it: the spec and, optionally, its change record. */
export function validatePatchSpec(input: unknown, source: string, locate?: Locate): NewPatchInput {
  const result = NewPatchSchema.safeParse(input);
  if (!result.success) {
    throw new LocalValidationError(
      `${source} is not a valid patch; nothing was sent`,
      toFieldIssues(result.error.issues, '', locate),
    );
  }
  return input as NewPatchInput;
}

/** `source` names the file the request came from, if any; otherwise the flags are to blame. */
export function validateRolloutRequest(input: unknown, source?: string, locate?: Locate): RolloutRequestInput {
  const result = RolloutRequestSchema.safeParse(input);
  if (!result.success) {
    const what = source ? `${source} (with the flags laid over it) is not a valid rollout request` : 'invalid rollout';
    throw new LocalValidationError(`${what}; nothing was sent`, toFieldIssues(result.error.issues, '', locate));
  }
  return input as RolloutRequestInput;
}
