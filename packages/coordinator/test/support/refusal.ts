import { FleetError } from '@fleetpatch/shared';

/** The `FleetError` an action was refused with; fails the test when the action was accepted. */
export async function refusal(action: () => unknown): Promise<FleetError> {
  try {
    await action();
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('the action was accepted');
}
