// @ts-check
// Bundles each program (tsc's output, after `tsc -b`) into one ES module in its package's dist/bin:
// packages/agent/dist/bin/fleetpatch-agent.js, …/coordinator/dist/bin/fleetpatch-coordinator.js,
// …/cli/dist/bin/fleetpatch.js — the files the packages' `bin`, the systemd units, the image and the
// tests run. Why: unbundled, a program found, read and compiled its modules one file at a time before
// its first line (the agent 359 files, the coordinator 579); one file halves the agent's start-up CPU
// and cuts the CLI's by 40 %, at every agent start and every command (README, Layout). Modules loaded on demand (PostgreSQL, undici, log-update, …) stay chunks of their own,
// still loaded only when needed. `npm run build` runs this; so do `npm test`, the fault suite and the bench.
import { chmodSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { rolldown } from 'rolldown';

const repo = join(import.meta.dirname, '..');

/** Each program: its package and the name its binary goes by. */
const PROGRAMS = [
  { pkg: 'agent', bin: 'fleetpatch-agent' },
  { pkg: 'coordinator', bin: 'fleetpatch-coordinator' },
  { pkg: 'cli', bin: 'fleetpatch' },
];

/**
 * Dependencies left to node_modules, each because it finds files of its own beside its code, which
 * a bundle would move away from them: better-sqlite3 its native addon, @fastify/swagger its
 * package.json, @fastify/swagger-ui its static files, pino the worker files of its transports.
 */
const LEFT_OUT = ['better-sqlite3', '@fastify/swagger', '@fastify/swagger-ui', 'pino'];

const isLeftOut = (/** @type {string} */ id) => LEFT_OUT.some((name) => id === name || id.startsWith(`${name}/`));

/** Code, not comments, that names `__dirname` or `__filename`: a module looking for its own files. */
const OWN_FILES = /\b__(dirname|filename)\b/;

for (const { pkg, bin } of PROGRAMS) {
  const dist = join(repo, 'packages', pkg, 'dist');
  const out = join(dist, 'bin');
  rmSync(out, { recursive: true, force: true });
  /** @type {string[]} */
  const warnings = [];
  const bundle = await rolldown({
    input: { [bin]: join(dist, 'main.js') },
    platform: 'node',
    external: isLeftOut,
    onLog: (level, log) => {
      warnings.push(`${level}: ${log.message}`);
    },
  });
  await bundle.write({ dir: out, format: 'esm', chunkFileNames: '[name]-[hash].js' });
  await bundle.close();
  chmodSync(join(out, `${bin}.js`), 0o755);
  if (warnings.length > 0) throw new Error(`bundling ${bin}:\n${warnings.join('\n')}`);
  // A dependency that reads files beside its own code would fail only when that code runs: refuse the
  // bundle now, naming it, so it is added to LEFT_OUT instead.
  for (const file of readdirSync(out)) {
    const lines = readFileSync(join(out, file), 'utf8').split('\n');
    const at = lines.findIndex((line) => OWN_FILES.test(line) && !/^\s*(\*|\/\/)/.test(line));
    if (at >= 0) throw new Error(`bundling ${bin}: ${file}:${at + 1} looks for its own files: ${lines[at]?.trim()}`);
  }
}
