import { describe, expect, it } from 'vitest';
import { describeError, UsageError } from '../src/cli-errors.js';
import { resolveConnection } from '../src/connection.js';

describe('resolveConnection', () => {
  it('takes flags over the environment and drops a trailing slash', () => {
    expect(
      resolveConnection({
        flags: { url: 'http://flag:1/', token: 'flag-token' },
        env: { FLEETPATCH_URL: 'http://env:2', FLEETPATCH_TOKEN: 'env-token' },
      }),
    ).toEqual({ url: 'http://flag:1', token: 'flag-token' });
    expect(
      resolveConnection({ flags: {}, env: { FLEETPATCH_URL: 'http://env:2', FLEETPATCH_TOKEN: 'env-token' } }),
    ).toEqual({ url: 'http://env:2', token: 'env-token' });
  });

  it('makes a missing token or URL a usage error (exit 2) that says how to fix it', () => {
    const noToken = () => resolveConnection({ flags: { url: 'http://x:1' }, env: {} });
    expect(noToken).toThrow(UsageError);
    expect(noToken).toThrow('no API token: pass --token TOKEN or set FLEETPATCH_TOKEN');
    expect(() => resolveConnection({ flags: { token: 't' }, env: {} })).toThrow('no coordinator URL');
    expect(() => resolveConnection({ flags: { token: 't', url: 'ftp://x' }, env: {} })).toThrow('http:// or https://');
    expect(describeError(new UsageError('x')).exitCode).toBe(2);
  });
});
