/**
 * A coordinator whose storage is full refuses new work with 507 `storage_full`, naming the cause,
 * instead of a 500 "internal error"; it saves nothing of the refused request, keeps answering
 * reads, and takes work again once there is room. The fault suite proves the same on a real full
 * file system (test/faults/8-disk-full-coordinator.test.ts); here SQLite's own page limit
 * (`max_page_count`) makes the app's real database answer SQLITE_FULL.
 */
import { ErrorBodySchema, ErrorCode, FleetError } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { storageFullError } from '../src/http/storage-full.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator } from './support/test-coordinator.js';

const running: TestCoordinator[] = [];
afterEach(async () => {
  for (const started of running.splice(0)) await started.close();
});

describe('storageFullError', () => {
  it.each([
    ['SQLITE_FULL', /database file system is full \(SQLITE_FULL\)/],
    // node-postgres puts the SQLSTATE in `code`: 53100 is disk_full.
    [
      '53100',
      /PostgreSQL store has no disk space left \(SQLSTATE 53100 disk_full\).*PostgreSQL server's data directory/,
    ],
    ['ENOSPC', /no space left .*\(ENOSPC\)/],
    ['EDQUOT', /quota .*\(EDQUOT\)/],
  ])('maps %s to storage_full, naming it', (code, message) => {
    const cause = Object.assign(new Error('disk'), { code });
    const mapped = storageFullError(cause);
    expect(mapped).toBeInstanceOf(FleetError);
    expect(mapped?.code).toBe(ErrorCode.storageFull);
    expect(mapped?.message).toMatch(message);
    expect(mapped?.cause).toBe(cause);
  });

  it.each([
    ['another SQLite error', { code: 'SQLITE_BUSY' }],
    ['another PostgreSQL error', { code: '53200' }],
    ['a prototype key as code', { code: 'constructor' }],
    ['a numeric code', { code: 28 }],
    ['no code', new Error('x')],
    ['null', null],
    ['a string', 'ENOSPC'],
  ])('leaves %s alone', (_, err) => {
    expect(storageFullError(err)).toBeUndefined();
  });
});

describe('a full database', () => {
  it('answers 507 storage_full, saves nothing of the request, keeps reads, and resumes when room returns', async () => {
    const started = await startTestCoordinator();
    running.push(started);
    const { app } = started;
    const { db } = app.fleet.store;
    const pages = db.pragma('page_count', { simple: true }) as number;
    // No page beyond those the database has: the next write that needs one gets SQLITE_FULL.
    db.pragma(`max_page_count = ${pages}`);
    const big = { ...SAMPLE_PATCH_SPEC, change: { ...SAMPLE_PATCH_SPEC.change, content: 'x'.repeat(200_000) } };

    const refused = await callApi(app, 'POST', '/v1/patches', big);
    expect(refused.status).toBe(507);
    const { error } = ErrorBodySchema.parse(refused.body);
    expect(error.code).toBe('storage_full');
    expect(error.message).toMatch(/SQLITE_FULL.*nothing of this request was saved/);
    expect(JSON.stringify(refused.body)).not.toMatch(/at .*\.js/);
    expect(started.logLines.some((l) => l.msg === 'request refused: storage full')).toBe(true);

    const listed = await callApi(app, 'GET', '/v1/patches');
    expect(listed.status).toBe(200);
    expect(JSON.stringify(listed.body)).not.toContain(SAMPLE_PATCH_SPEC.title);

    db.pragma('max_page_count = 1073741823');
    const accepted = await callApi(app, 'POST', '/v1/patches', big);
    expect(accepted.status).toBe(201);
  });
});
