/**
 * The file driver's checks that only matter when something else touches the file while an order
 * runs: drift that appears after the first look is refused right up to the rename, and a snapshot
 * is an escape hatch only if it is what the path held and what the disk gives back. The other
 * writer acts from the driver's test crash points (`file:<write>:<step>`), so each race is hit
 * exactly, on a real filesystem in a temp dir.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, type FileChange, FileChangeSchema, FleetError } from '@fleetpatch/shared';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DriverContext } from '../src/drivers/driver.js';
import { FileDriver } from '../src/drivers/file-driver.js';

const PATH = '/etc/myapp/app.conf';
const OLD = 'listen = 80\n';
const NEW = 'listen = 8080\n';
const OTHER = 'listen = 9090 # written by someone else meanwhile\n';

let base: string;
let appDir: string;
let target: string;
let snapshotDir: string;
/** The crash points the driver passed, in order. */
let reached: string[];
/** What the "other writer" does at a given crash point. */
let actAt: Record<string, () => void>;
let driver: FileDriver;
const ctx: DriverContext = { signal: new AbortController().signal, log: pino({ level: 'silent' }) };

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'fleetpatch-file-last-moment-'));
  const rootDir = join(base, 'root');
  appDir = join(rootDir, 'etc', 'myapp');
  target = join(appDir, 'app.conf');
  snapshotDir = join(base, 'state', 'orders', 'order-1', 'snapshot');
  await mkdir(appDir, { recursive: true, mode: 0o755 });
  await writeFile(target, OLD, { mode: 0o644 });
  reached = [];
  actAt = {};
  driver = new FileDriver({
    rootDir,
    allowedRoots: ['/etc/myapp'],
    checkpoint: (name) => {
      reached.push(name);
      actAt[name]?.();
    },
  });
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Owned by whoever runs the test, so no root is needed. */
function fileChange(overrides: Partial<FileChange> = {}): FileChange {
  return FileChangeSchema.parse({
    kind: 'file',
    path: PATH,
    content: NEW,
    mode: '0644',
    owner: String(process.getuid?.() ?? 0),
    group: String(process.getgid?.() ?? 0),
    ...overrides,
  });
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

async function failure(promise: Promise<unknown>): Promise<FleetError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err instanceof FleetError) return err;
  throw new Error(`expected a FleetError, got ${err === undefined ? 'success' : String(err)}`);
}

describe('FileDriver apply: drift up to the rename', () => {
  it('refuses drift that appears after the first check, and leaves the other writer’s file in place', async () => {
    const change = fileChange({ expectedPriorSha256: sha256(OLD) });
    // The new bytes are written and fsync'd to the temp file; just before the rename, someone edits the file.
    actAt['file:apply:temp-synced'] = () => writeFileSync(target, OTHER);

    const err = await failure(driver.apply(change, ctx));

    expect(reached).toEqual(['file:apply:temp-written', 'file:apply:temp-synced']);
    expect(err.code).toBe(ErrorCode.preconditionFailed);
    expect(err.message).toBe(`drift: expected sha256 ${sha256(OLD)}, found ${sha256(OTHER)}`);
    expect(await readFile(target, 'utf8')).toBe(OTHER);
    expect(await readdir(appDir)).toEqual(['app.conf']);
  });

  it('refuses a file that appears after the first check when the order expected it absent', async () => {
    await rm(target);
    actAt['file:apply:temp-synced'] = () => writeFileSync(target, OTHER);

    const err = await failure(driver.apply(fileChange({ expectedPriorSha256: 'absent' }), ctx));

    expect(err.code).toBe(ErrorCode.preconditionFailed);
    expect(await readFile(target, 'utf8')).toBe(OTHER);
    expect(await readdir(appDir)).toEqual(['app.conf']);
  });

  it('renames when nothing changed meanwhile (the checks above are not refusing everything)', async () => {
    await driver.apply(fileChange({ expectedPriorSha256: sha256(OLD) }), ctx);

    expect(reached).toEqual(['file:apply:temp-written', 'file:apply:temp-synced', 'file:apply:renamed']);
    expect(await readFile(target, 'utf8')).toBe(NEW);
  });
});

describe('FileDriver snapshot: no escape hatch unless verified', () => {
  it('refuses a snapshot when the file changes while it is being copied', async () => {
    // No expected prior: only the snapshot's own re-read can notice that the copy is already stale.
    actAt['file:snapshot:temp-written'] = () => writeFileSync(target, OTHER);

    const err = await failure(driver.snapshot(fileChange(), snapshotDir, ctx));

    expect(reached).toContain('file:snapshot:temp-written');
    expect(err.code).toBe(ErrorCode.snapshotFailed);
    expect(err.message).toBe(`${PATH} changed while it was being snapshotted`);
  });

  it('refuses a snapshot whose stored copy does not read back as what was copied', async () => {
    // The copy is renamed into place, and then what the disk holds is not what was written.
    actAt['file:snapshot:renamed'] = () => writeFileSync(join(snapshotDir, 'file-prior-content'), 'bit rot\n');

    const err = await failure(driver.snapshot(fileChange(), snapshotDir, ctx));

    expect(reached).toEqual(['file:snapshot:temp-written', 'file:snapshot:temp-synced', 'file:snapshot:renamed']);
    expect(err.code).toBe(ErrorCode.snapshotFailed);
    expect(err.message).toBe(`snapshot copy of ${PATH} does not read back intact`);
    expect(err.details).toMatchObject({ expected: sha256(OLD), found: sha256('bit rot\n') });
    // The target was never touched.
    expect(await readFile(target, 'utf8')).toBe(OLD);
  });

  it('records a snapshot when nothing interferes (the checks above are not refusing everything)', async () => {
    const snapshot = await driver.snapshot(fileChange(), snapshotDir, ctx);

    expect(snapshot).toMatchObject({ state: 'present', sha256: sha256(OLD) });
    expect(await readFile(join(snapshotDir, 'file-prior-content'), 'utf8')).toBe(OLD);
  });
});

describe('FileDriver restore: crash points', () => {
  it('names each step of the restore write', async () => {
    const change = fileChange();
    const snapshot = await driver.snapshot(change, snapshotDir, ctx);
    await driver.apply(change, ctx);
    reached = [];

    await driver.restore(change, snapshot, snapshotDir, ctx);

    expect(reached).toEqual(['file:restore:temp-written', 'file:restore:temp-synced', 'file:restore:renamed']);
    expect(await readFile(target, 'utf8')).toBe(OLD);
  });
});
