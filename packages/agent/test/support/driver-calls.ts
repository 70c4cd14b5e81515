import { FleetError } from '@fleetpatch/shared';
import { pino } from 'pino';
import { expect } from 'vitest';
import type { DriverContext } from '../../src/drivers/driver.js';

/** What a driver is given outside an order: a signal nobody aborts and a silent log (plus `extra`). */
export function driverContext(extra: Partial<DriverContext> = {}): DriverContext {
  return { signal: new AbortController().signal, log: pino({ level: 'silent' }), ...extra };
}

/** Expects `promise` to reject with a `FleetError` of `code` (its message shown if not); returns it. */
export async function expectFleetError(promise: Promise<unknown>, code: string): Promise<FleetError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FleetError);
  expect((err as FleetError).code, (err as FleetError).message).toBe(code);
  return err as FleetError;
}
