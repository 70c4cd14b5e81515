/**
 * The database holds token hashes and the audit trail: the coordinator's user alone may read it,
 * WAL and shared-memory files included, however permissive the umask.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openDatabase } from '../src/store/database.js';

let root: string;
let previousUmask: number;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'fleetpatch-db-mode-'));
  previousUmask = process.umask(0o000); // the worst case: nothing masked
});
afterEach(() => {
  process.umask(previousUmask);
  rmSync(root, { recursive: true, force: true });
});

const modeOf = (path: string) => statSync(path).mode & 0o777;

it('creates the data directory 0700 and the database, -wal and -shm files 0600', () => {
  const dataDir = join(root, 'data', 'coordinator');
  const file = join(dataDir, 'fleetpatch.db');
  const db = openDatabase(file);
  try {
    db.prepare('CREATE TABLE probe (x)').run(); // a write, so the WAL has content
    expect(modeOf(dataDir)).toBe(0o700);
    for (const path of [file, `${file}-wal`, `${file}-shm`]) {
      expect(existsSync(path), path).toBe(true);
      expect(modeOf(path), path).toBe(0o600);
    }
  } finally {
    db.close();
  }
});

it('tightens a database file an older version left readable to others', () => {
  const file = join(root, 'fleetpatch.db');
  openDatabase(file).close();
  chmodSync(file, 0o644);
  const db = openDatabase(file);
  try {
    expect(modeOf(file)).toBe(0o600);
    expect(modeOf(`${file}-wal`)).toBe(0o600);
  } finally {
    db.close();
  }
});
