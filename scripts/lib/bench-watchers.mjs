// `--watchers K`: K real `fleetpatch rollout status ID --watch` processes follow the rollout as an
// operator's terminal would, so the bench measures what watching a rollout costs the coordinator
// (and the rollout). Off a terminal the CLI writes one line per change, which the bench counts.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { cpuMsOf } from './bench-measures.mjs';

const CLI = join(import.meta.dirname, '..', '..', 'packages', 'cli', 'dist', 'bin', 'fleetpatch.js');

/**
 * Starts `count` watchers of `rolloutId` against the coordinator at `url`.
 * @param {number} count @param {string} url @param {string} token @param {string} rolloutId
 */
export function startWatchers(count, url, token, rolloutId) {
  const children = Array.from({ length: count }, () => {
    const child = spawn(process.execPath, [CLI, 'rollout', 'status', rolloutId, '--watch'], {
      env: { ...process.env, FLEETPATCH_URL: url, FLEETPATCH_TOKEN: token, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const watcher = {
      child,
      lines: 0,
      stderr: '',
      cpuMs: 0,
      /** @type {number | null} */ exitCode: null,
      exit: /** @type {Promise<number | null>} */ (Promise.resolve(null)),
    };
    child.stdout.on('data', (chunk) => {
      for (const byte of chunk) if (byte === 10) watcher.lines++;
    });
    child.stderr.on('data', (chunk) => {
      watcher.stderr = (watcher.stderr + chunk).slice(-2000);
    });
    watcher.exit = new Promise((resolve) => {
      // Its CPU is read while it still exists: /proc forgets a process once it is reaped.
      const sample = setInterval(() => {
        const ms = cpuMsOf(child.pid);
        if (Number.isFinite(ms)) watcher.cpuMs = ms;
      }, 50);
      child.on('exit', (code, signal) => {
        clearInterval(sample);
        watcher.exitCode = code ?? (signal ? 128 : null);
        resolve(code);
      });
    });
    return watcher;
  });
  return {
    /** Each watcher so far: the lines it wrote, and its exit code once it has exited (null before). */
    progress() {
      return children.map((w) => ({ lines: w.lines, exitCode: w.exitCode, stderr: w.stderr }));
    },
    /**
     * Waits until every watcher has exited (the CLI ends its watch at the rollout's final state) and
     * says how each ended: its exit code, the lines it wrote, its CPU (sampled every 50 ms, so up to
     * 50 ms of the last is missed).
     */
    async finished() {
      const codes = await Promise.all(children.map((w) => w.exit));
      return children.map((w, i) => ({ exitCode: codes[i], lines: w.lines, cpuMs: w.cpuMs, stderr: w.stderr }));
    },
    kill() {
      for (const w of children) w.child.kill('SIGKILL');
    },
  };
}
