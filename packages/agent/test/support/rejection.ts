import { FleetError } from '@fleetpatch/shared';

/** The `FleetError` a promise rejected with; fails the test when it resolved. */
export async function rejection(promise: Promise<unknown>): Promise<FleetError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('the promise resolved');
}
