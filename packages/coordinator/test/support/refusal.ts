import { FleetError } from '@fleetpatch/shared';

/** The `FleetError` an action was refused with; fails the test when the action was accepted. */
export function refusal(action: () => unknown): FleetError {
  try {
    action();
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('the action was accepted');
}
