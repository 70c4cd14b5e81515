import { ErrorCode, FleetError } from '@fleetpatch/shared';

/**
 * A request the schema let through but the engine refuses because of one field: answered like a
 * schema failure (400, `details.issues` naming the field), which is what it is to the caller.
 */
export function invalidField(path: string, message: string): FleetError {
  return new FleetError(ErrorCode.validationFailed, `invalid request: ${path}: ${message}`, {
    path,
    issues: [{ path, message }],
  });
}
