import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetError } from '@fleetpatch/shared';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AccountDatabase,
  findAccountId,
  parseAccountFile,
  resolveGid,
  resolveUid,
} from '../src/drivers/account-ids.js';

let dir: string;
let database: AccountDatabase;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetpatch-account-ids-'));
  database = { passwdPath: join(dir, 'passwd'), groupPath: join(dir, 'group') };
  await writeFile(
    database.passwdPath,
    [
      'root:x:0:0:root:/root:/bin/bash',
      '# a comment',
      '',
      'garbage line',
      'app:x:1001:1001::/srv/app:/usr/sbin/nologin',
      'app:x:2002:2002:shadowed duplicate:/:/bin/false',
      'machine$:x:3003:3003::/:/bin/false',
    ].join('\n'),
  );
  await writeFile(database.groupPath, 'root:x:0:\nwheel:x:10:root,app\n');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<FleetError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('expected the promise to reject with a FleetError');
}

describe('account ids', () => {
  it('maps names to ids; the first entry wins and malformed lines are skipped', () => {
    const ids = parseAccountFile('a:x:1:1\nbad\nb:x:notanumber:2\na:x:9:9\n');
    expect([...ids]).toEqual([['a', 1]]);
  });

  it('finds the id of one name as parsing the whole file would, whatever the file holds', () => {
    // Pieces that make the cases: comments, empty and short lines, ids out of range or not digits,
    // names that are prefixes of others or hold a ':' or a newline.
    const piece = fc.constantFrom('a', 'ab', '#a', '', 'x', '1', '4294967294', '4294967295', '-1', '\r');
    const line = fc.array(piece, { maxLength: 4 }).map((fields) => fields.join(':'));
    const text = fc.array(line, { maxLength: 6 }).map((lines) => lines.join('\n'));
    const name = fc.constantFrom('a', 'ab', '#a', '', 'x', 'a:x', 'a\n', '1');
    fc.assert(
      fc.property(text, name, (file, wanted) => {
        expect(findAccountId(file, wanted)).toBe(parseAccountFile(file).get(wanted));
      }),
      { numRuns: 5000 },
    );
  });

  it('resolves users and groups by name', async () => {
    expect(await resolveUid('app', database)).toBe(1001);
    expect(await resolveUid('machine$', database)).toBe(3003);
    expect(await resolveGid('wheel', database)).toBe(10);
  });

  it('passes numeric ids through without a lookup, even ids with no entry', async () => {
    expect(await resolveUid('4242', database)).toBe(4242);
    expect(await resolveGid('0', database)).toBe(0);
  });

  it('refuses (uid_t)-1, which chown reads as "leave unchanged"', async () => {
    expect((await failure(resolveUid('4294967295', database))).code).toBe('precondition_failed');
    expect(await resolveUid('4294967294', database)).toBe(4294967294);
  });

  it('refuses unknown names with precondition_failed', async () => {
    const error = await failure(resolveGid('app', database));
    expect(error.code).toBe('precondition_failed');
    expect(error.message).toContain('unknown group "app"');
  });

  it('reads the real host database by default', async () => {
    expect(await resolveUid('root')).toBe(0);
    expect(await resolveGid('root')).toBe(0);
  });
});
