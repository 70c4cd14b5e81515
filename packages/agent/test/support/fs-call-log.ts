import type * as Fs from 'node:fs';
import type * as FsPromises from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { relative } from 'node:path';

/** One file-system call the code under test made, in the order it made them. */
export interface FsCall {
  call: 'open' | 'lstat' | 'mkdir' | 'rename' | 'unlink' | 'write' | 'chown' | 'chmod' | 'sync' | 'close';
  /** The path, or for a handle call the path it was opened with. */
  path: string;
  /** rename: where to. */
  to?: string;
}

/**
 * The order of file-system calls is where durability lives (a temp file fsync'd before its rename,
 * the directory fsync'd after it). A test file swaps `node:fs/promises` and `node:fs` (the agent's
 * writes and reads of files are synchronous calls, see src/fs/atomic-file.ts) for recording copies:
 *
 *   const fsCalls = vi.hoisted(() => new FsCallLog());  // FsCallLog imported with `await import`
 *   vi.mock('node:fs/promises', async (importOriginal) => fsCalls.wrap(await importOriginal()));
 *   vi.mock('node:fs', async (importOriginal) => fsCalls.wrapSync(await importOriginal()));
 *
 * Every call still goes to the real file system, and a synchronous call is logged under the same
 * name as its promise twin (`openSync` as `open`, `fsyncSync` as `sync`, a call on a descriptor
 * with the path it was opened with). `before` lets a test act at an exact point (a concurrent
 * writer, a crash) just before a call runs; before a synchronous call the act must be synchronous
 * too, and what it does to the file system is not logged.
 */
export class FsCallLog {
  readonly calls: FsCall[] = [];
  #hooks: { when: (call: FsCall) => boolean; run: () => void | Promise<void> }[] = [];
  /** Paths of the descriptors the synchronous `open` returned, until they are closed. */
  readonly #fdPaths = new Map<number, string>();
  /** While a hook runs its own calls are not the code under test's. */
  #inHook = false;

  /** The recording module: `open`, `lstat`, `mkdir`, `rename` and `unlink` are logged, and so are the handles `open` returns. */
  wrap(actual: typeof FsPromises): typeof FsPromises {
    const log = this;
    return {
      ...actual,
      async open(...args: Parameters<typeof actual.open>) {
        await log.#record({ call: 'open', path: String(args[0]) });
        return log.#recordHandle(await actual.open(...args), String(args[0]));
      },
      async lstat(...args: Parameters<typeof actual.lstat>) {
        await log.#record({ call: 'lstat', path: String(args[0]) });
        return actual.lstat(...args);
      },
      async mkdir(...args: Parameters<typeof actual.mkdir>) {
        await log.#record({ call: 'mkdir', path: String(args[0]) });
        return actual.mkdir(...args);
      },
      async rename(from: FsPromises.FileHandle | string | Buffer | URL, to: string | Buffer | URL) {
        await log.#record({ call: 'rename', path: String(from), to: String(to) });
        return actual.rename(String(from), to);
      },
      async unlink(...args: Parameters<typeof actual.unlink>) {
        await log.#record({ call: 'unlink', path: String(args[0]) });
        return actual.unlink(...args);
      },
    } as typeof FsPromises;
  }

  /** The recording `node:fs`: the synchronous calls the agent makes, with the names of `wrap`'s. */
  wrapSync(actual: typeof Fs): typeof Fs {
    const log = this;
    const onPath =
      <A extends unknown[], R>(call: FsCall['call'], fn: (path: Fs.PathLike, ...rest: A) => R) =>
      (path: Fs.PathLike, ...rest: A): R => {
        log.#recordSync({ call, path: String(path) });
        return fn(path, ...rest);
      };
    const onFd =
      <A extends unknown[], R>(call: FsCall['call'], fn: (fd: number, ...rest: A) => R) =>
      (fd: number, ...rest: A): R => {
        log.#recordSync({ call, path: log.#fdPaths.get(fd) ?? `fd ${fd}` });
        return fn(fd, ...rest);
      };
    return {
      ...actual,
      openSync(...args: Parameters<typeof actual.openSync>) {
        log.#recordSync({ call: 'open', path: String(args[0]) });
        const fd = actual.openSync(...args);
        if (!log.#inHook) log.#fdPaths.set(fd, String(args[0]));
        return fd;
      },
      closeSync(fd: number) {
        log.#recordSync({ call: 'close', path: log.#fdPaths.get(fd) ?? `fd ${fd}` });
        log.#fdPaths.delete(fd);
        actual.closeSync(fd);
      },
      lstatSync: onPath('lstat', actual.lstatSync),
      mkdirSync: onPath('mkdir', actual.mkdirSync),
      unlinkSync: onPath('unlink', actual.unlinkSync),
      renameSync(from: Fs.PathLike, to: Fs.PathLike) {
        log.#recordSync({ call: 'rename', path: String(from), to: String(to) });
        actual.renameSync(from, to);
      },
      writeSync: onFd('write', actual.writeSync as (fd: number, ...rest: unknown[]) => number),
      // One write of several buffers (the journal's entries): the same step as a write.
      writevSync: onFd('write', actual.writevSync as (fd: number, ...rest: unknown[]) => number),
      fchownSync: onFd('chown', actual.fchownSync),
      fchmodSync: onFd('chmod', actual.fchmodSync),
      fsyncSync: onFd('sync', actual.fsyncSync),
      // The journal's appends sync their data alone: the same step as an fsync.
      fdatasyncSync: onFd('sync', actual.fdatasyncSync),
    } as typeof Fs;
  }

  /** Runs `run` once, just before the first call `when` matches. */
  before(when: (call: FsCall) => boolean, run: () => void | Promise<void>): void {
    this.#hooks.push({ when, run });
  }

  clear(): void {
    this.calls.length = 0;
    this.#hooks = [];
  }

  /**
   * The calls as `<call> <path>` lines, paths relative to `base` and the random part of the atomic
   * writer's temp names as `*`, so a whole sequence can be compared at once.
   */
  lines(base: string): string[] {
    const show = (path: string) => (relative(base, path) || '.').replace(/(fleetpatch-tmp-)[0-9a-f]{16}$/, '$1*');
    return this.calls.map((c) => `${c.call} ${show(c.path)}${c.to === undefined ? '' : ` -> ${show(c.to)}`}`);
  }

  async #record(call: FsCall): Promise<void> {
    if (this.#inHook) return;
    const hook = this.#takeHook(call);
    if (hook !== undefined) await hook.run();
    this.calls.push(call);
  }

  #recordSync(call: FsCall): void {
    if (this.#inHook) return;
    const hook = this.#takeHook(call);
    if (hook !== undefined) {
      this.#inHook = true;
      try {
        const pending = hook.run();
        if (pending instanceof Promise)
          throw new Error(`the act before the synchronous ${call.call} must be synchronous`);
      } finally {
        this.#inHook = false;
      }
    }
    this.calls.push(call);
  }

  #takeHook(call: FsCall) {
    const hook = this.#hooks.find((h) => h.when(call));
    if (hook !== undefined) this.#hooks.splice(this.#hooks.indexOf(hook), 1);
    return hook;
  }

  #recordHandle(handle: FileHandle, path: string): FileHandle {
    const recorded = new Set(['write', 'chown', 'chmod', 'sync', 'close']);
    return new Proxy(handle, {
      get: (target, property, _receiver) => {
        const value = Reflect.get(target, property, target);
        if (typeof value !== 'function') return value;
        if (typeof property === 'string' && recorded.has(property)) {
          return async (...args: unknown[]) => {
            await this.#record({ call: property as FsCall['call'], path });
            return value.apply(target, args);
          };
        }
        return value.bind(target);
      },
    });
  }
}
