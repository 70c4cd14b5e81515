import { describe, expect, it } from 'vitest';
import { ErrorCode, FleetError } from '../src/errors.js';

describe('FleetError', () => {
  it('keeps the error it wraps as its cause, out of what is serialised', () => {
    const low = new Error('EACCES: permission denied');
    const err = new FleetError(ErrorCode.snapshotFailed, 'cannot store the prior .deb', { path: '/x' }, { cause: low });
    expect(err.cause).toBe(low);
    expect(err.details).toEqual({ path: '/x' });
    // Not enumerable (ES2022), so spreading or JSON never carries a wrapped error to a client.
    expect(Object.keys(err)).not.toContain('cause');
    expect(JSON.stringify({ ...err })).not.toContain('EACCES');
  });

  it('has no cause when none is given', () => {
    expect(new FleetError(ErrorCode.notFound, 'gone').cause).toBeUndefined();
  });
});
