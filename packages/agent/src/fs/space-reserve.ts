import { closeSync, constants, fsyncSync, openSync, statfsSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDirectory, progressOf } from './atomic-file.js';

/**
 * Room kept aside on a file system for the writes that must not fail when it fills: a file of real
 * bytes (not a sparse one, which would hold no blocks), given back when such a write meets ENOSPC
 * so that it can be tried once more, and made again once there is room. The idea of a file
 * system's reserved blocks, or a "ballast" file: whatever fills the disk cannot take the last bytes
 * an order needs to come to rest.
 */
export class SpaceReserve {
  /** Known in memory, so the common case (a reserve in place) costs a journal write nothing. */
  private held = false;

  private constructor(
    readonly path: string,
    readonly bytes: number,
  ) {}

  /** The reserve at `path`: the one there if whole, else made now if there is room (else later). */
  static async open(path: string, bytes: number): Promise<SpaceReserve> {
    const reserve = new SpaceReserve(path, bytes);
    try {
      reserve.held = statSync(path).size === bytes;
      // One cut short (by a crash while it was made): made again whole, below.
      if (!reserve.held) reserve.release();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await reserve.replenish();
    return reserve;
  }

  /** Whether the reserve is in place. */
  get available(): boolean {
    return this.held;
  }

  /** Gives the room back to the file system, for the write that needs it next. Returns whether there was any. */
  release(): boolean {
    const had = this.held;
    this.held = false;
    try {
      unlinkSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return had;
  }

  /**
   * Makes the reserve again if it is not in place and space has come back: twice its size free, so
   * that it never takes back the room it has just given to the writes still to come on a disk that
   * is still full. All of it or nothing (a partial one is removed). Returns whether it is in place.
   */
  async replenish(): Promise<boolean> {
    if (this.held) return true;
    const { bavail, bsize } = statfsSync(dirname(this.path));
    if (bavail * bsize < 2 * this.bytes) return false;
    let fd: number | undefined;
    try {
      fd = openSync(this.path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      const chunk = Buffer.alloc(Math.min(this.bytes, 64 * 1024));
      for (let written = 0; written < this.bytes; ) {
        written += progressOf(writeSync(fd, chunk, 0, Math.min(chunk.byteLength, this.bytes - written)));
      }
      // Its blocks on disk, not only in the page cache: a crash must not leave a hole in their place.
      fsyncSync(fd);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
      this.release();
      if (code === 'ENOSPC' || code === 'EDQUOT') return false;
      throw err;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    await fsyncDirectory(dirname(this.path));
    this.held = true;
    return true;
  }
}
