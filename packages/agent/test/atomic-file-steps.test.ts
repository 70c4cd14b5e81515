/**
 * The test crash points inside `writeFileAtomically` stand where their names say: the crash matrix
 * (test/agent-crash-recovery-*.test.ts) kills the agent at them, so each must see the disk in the
 * state a crash at that moment would leave.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AtomicWriteStep, isTempFileFor, writeAll, writeFileAtomically } from '../src/fs/atomic-file.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetpatch-atomic-steps-'));
  await writeFile(join(dir, 'app.conf'), 'old\n', { mode: 0o600 });
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Seen {
  step: AtomicWriteStep;
  target: string;
  temps: { bytes: string; mode: number }[];
}

/** What a crash at each step would find: the target's bytes and the temp files beside it. */
function look(step: AtomicWriteStep): Seen {
  const temps = readdirSync(dir)
    .filter((name) => isTempFileFor('app.conf', name))
    .map((name) => ({
      bytes: readFileSync(join(dir, name), 'utf8'),
      mode: statSync(join(dir, name)).mode & 0o7777,
    }));
  return { step, target: readFileSync(join(dir, 'app.conf'), 'utf8'), temps };
}

describe('writeFileAtomically crash points', () => {
  it('passes temp-written and temp-synced with the old target and the whole new temp file, then renamed with the new target', async () => {
    const seen: Seen[] = [];
    await writeFileAtomically(dir, 'app.conf', { mode: 0o640 }, (handle) => writeAll(handle, Buffer.from('new\n')), {
      checkpoint: (step) => seen.push(look(step)),
    });

    expect(seen).toEqual([
      { step: 'temp-written', target: 'old\n', temps: [{ bytes: 'new\n', mode: 0o640 }] },
      { step: 'temp-synced', target: 'old\n', temps: [{ bytes: 'new\n', mode: 0o640 }] },
      { step: 'renamed', target: 'new\n', temps: [] },
    ]);
  });

  it('comes to temp-synced before the last check, so a write backed out there never reaches renamed', async () => {
    const steps: string[] = [];
    const refused = writeFileAtomically(dir, 'app.conf', { mode: 0o600 }, (h) => writeAll(h, Buffer.from('new\n')), {
      checkpoint: (step) => steps.push(step),
      beforeRename: async () => {
        steps.push('beforeRename');
        throw new Error('backed out');
      },
    });

    await expect(refused).rejects.toThrow('backed out');
    expect(steps).toEqual(['temp-written', 'temp-synced', 'beforeRename']);
    expect(await readFile(join(dir, 'app.conf'), 'utf8')).toBe('old\n');
    expect(readdirSync(dir)).toEqual(['app.conf']);
  });
});
