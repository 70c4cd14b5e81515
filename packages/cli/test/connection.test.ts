import { describe, expect, it } from 'vitest';
import { describeError, UsageError } from '../src/cli-errors.js';
import { resolveConnection } from '../src/connection.js';

const noFile = (path: string): string => {
  throw Object.assign(new Error(`no ${path}`), { code: 'ENOENT' });
};
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('resolveConnection', () => {
  it('takes flags over the environment and drops a trailing slash', () => {
    expect(
      resolveConnection({
        flags: { url: 'https://flag:1/', token: 'flag-token' },
        env: { FLEETPATCH_URL: 'https://env:2', FLEETPATCH_TOKEN: 'env-token' },
        readFile: noFile,
      }),
    ).toEqual({ url: 'https://flag:1', token: 'flag-token' });
    expect(
      resolveConnection({
        flags: {},
        env: { FLEETPATCH_URL: 'https://env:2', FLEETPATCH_TOKEN: 'env-token' },
        readFile: noFile,
      }),
    ).toEqual({ url: 'https://env:2', token: 'env-token' });
  });

  it('makes a missing token or URL a usage error (exit 2) that says how to fix it', () => {
    const noToken = () => resolveConnection({ flags: { url: 'http://x:1' }, env: {}, readFile: noFile });
    expect(noToken).toThrow(UsageError);
    expect(noToken).toThrow('no API token: pass --token TOKEN or set FLEETPATCH_TOKEN');
    expect(() => resolveConnection({ flags: { token: 't' }, env: {}, readFile: noFile })).toThrow('no coordinator URL');
    expect(() => resolveConnection({ flags: { token: 't', url: 'ftp://x' }, env: {}, readFile: noFile })).toThrow(
      'http:// or https://',
    );
    expect(describeError(new UsageError('x')).exitCode).toBe(2);
  });

  it('sends a token over plain http:// only to this machine, unless --insecure', () => {
    const over = (url: string, insecure?: boolean) => () =>
      resolveConnection({ flags: { url, token: 't', insecure }, env: {}, readFile: noFile });
    for (const local of ['http://127.0.0.1:1', 'http://localhost:1', 'http://[::1]:1'])
      expect(over(local)).not.toThrow();
    expect(over('http://fleet.example:7420')).toThrow(UsageError);
    expect(over('http://fleet.example:7420')).toThrow(
      'refusing to send the API token in clear to fleet.example:7420: use https:// (with --ca-file for a private CA), or pass --insecure',
    );
    expect(over('http://fleet.example:7420', true)).not.toThrow();
    expect(over('https://fleet.example:7420')).not.toThrow();
  });

  it('reads the CA named by --ca-file or FLEETPATCH_CA_FILE, the flag first; an unreadable one is a usage error', () => {
    const files: Record<string, string> = { '/flag.pem': PEM, '/env.pem': `${PEM}\n`, '/junk': 'hello' };
    const readFile = (path: string) => files[path] ?? noFile(path);
    const resolve = (caFile: string | undefined, envFile: string | undefined) =>
      resolveConnection({
        flags: { url: 'https://h:1', token: 't', caFile },
        env: { FLEETPATCH_CA_FILE: envFile },
        readFile,
      });
    expect(resolve('/flag.pem', '/env.pem').ca).toBe(PEM);
    expect(resolve(undefined, '/env.pem').ca).toBe(`${PEM}\n`);
    expect(resolve(undefined, undefined).ca).toBeUndefined();
    expect(() => resolve('/missing.pem', undefined)).toThrow('cannot read --ca-file /missing.pem: ENOENT');
    expect(() => resolve('/junk', undefined)).toThrow('--ca-file /junk holds no PEM certificate');
  });
});
