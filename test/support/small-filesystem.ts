import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { type Requirement, requirement } from './requirements.js';

/**
 * A tiny file system of its own (a tmpfs of a fixed size) mounted on a directory, that a test can
 * fill to the last byte and empty again: a real ENOSPC for whatever keeps its files there. The
 * mount is the test's: `unmount` (idempotent) takes it away, and the directory is left empty.
 */
export function smallFilesystemsAvailable(): { available: true } | { available: false; reason: string } {
  if (process.getuid?.() !== 0) return { available: false, reason: 'mounting a tmpfs needs root' };
  const probe = spawnSync('mount', ['--version'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) return { available: false, reason: '`mount` (util-linux) is not available' };
  return { available: true };
}

export const smallFilesystems: Requirement = requirement('a tmpfs mount', smallFilesystemsAvailable());

/** Where `fill` puts its filler: a name nothing else in a data dir or file root uses. */
const FILLER = '.fault-suite-filler';

export class SmallFilesystem {
  private mounted = true;

  private constructor(readonly dir: string) {}

  /** Mounts a tmpfs of `sizeKiB` on `dir` (created if missing). */
  static async mount(dir: string, sizeKiB: number): Promise<SmallFilesystem> {
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=0755`, 'fault-suite', dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return new SmallFilesystem(dir);
  }

  /**
   * Writes a filler until the file system answers ENOSPC: after it, no byte is free. Returns the
   * bytes the filler took.
   */
  async fill(): Promise<number> {
    const file = await open(join(this.dir, FILLER), 'a');
    // Page-sized writes at page-aligned offsets: the first that fails needs a page tmpfs no longer has.
    const chunk = Buffer.alloc(4096);
    let written = 0;
    try {
      for (;;) {
        try {
          written += (await file.write(chunk)).bytesWritten;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw err;
        }
      }
    } finally {
      await file.close();
    }
    return written;
  }

  /** Space returns: the filler goes. */
  async free(): Promise<void> {
    await rm(join(this.dir, FILLER), { force: true });
  }

  /** Unmounts (lazily if something still holds a file there); safe to call twice. */
  unmount(): void {
    if (!this.mounted) return;
    this.mounted = false;
    if (spawnSync('umount', [this.dir], { stdio: 'ignore' }).status !== 0) {
      spawnSync('umount', ['-l', this.dir], { stdio: 'ignore' });
    }
  }
}

/**
 * The hosts' small file systems of one describe, under a work directory of its own: its hooks are
 * registered where this is called — before a fault fleet's, so every mount is taken away after the
 * fleet's agents have stopped. `mount` makes one for a host, `of` finds it again.
 */
export function useSmallFilesystems(name: string): {
  base(): string;
  mount(hostId: string, dir: string, sizeKiB: number): Promise<SmallFilesystem>;
  of(hostId: string): SmallFilesystem;
} {
  let base: string | undefined;
  const disks = new Map<string, SmallFilesystem>();
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), `fleetpatch-${name}-`));
  });
  afterAll(async () => {
    for (const disk of disks.values()) disk.unmount();
    if (base) await rm(base, { recursive: true, force: true });
  });
  return {
    base: () => {
      if (!base) throw new Error("the small file systems' work directory is not made yet");
      return base;
    },
    async mount(hostId, dir, sizeKiB) {
      const disk = await SmallFilesystem.mount(dir, sizeKiB);
      disks.set(hostId, disk);
      return disk;
    },
    of(hostId) {
      const disk = disks.get(hostId);
      if (!disk) throw new Error(`no small file system for ${hostId}`);
      return disk;
    },
  };
}
