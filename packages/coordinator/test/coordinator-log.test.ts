/**
 * The coordinator's log is written behind the event loop, and what is left is written at exit: a
 * process that logs and exits at once (a second signal, a fatal error) keeps every line.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/** tsc's output of coordinator-log.ts: `npm test` builds it before vitest runs. */
const MODULE = fileURLToPath(new URL('../dist/coordinator-log.js', import.meta.url));
const LINES = 2000;

/** Runs a process that logs LINES lines in one turn of its loop and then calls `process.exit` at once. */
function logThenExit(synchronous: boolean): string[] {
  const script = `
    const { coordinatorLogger } = await import(${JSON.stringify(MODULE)});
    const log = coordinatorLogger('info', { synchronous: ${synchronous} });
    for (let i = 0; i < ${LINES}; i++) log.info({ i }, 'a line');
    log.warn('exiting now');
    process.exit(1);`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(1);
  return run.stdout.trimEnd().split('\n');
}

describe('the coordinator log', () => {
  it('keeps every line logged before an immediate exit, written behind the loop', () => {
    const lines = logThenExit(false).map((line) => JSON.parse(line) as { msg: string; i?: number; service: string });
    expect(lines).toHaveLength(LINES + 1);
    expect(lines.slice(0, LINES).map((line) => line.i)).toEqual(Array.from({ length: LINES }, (_, i) => i));
    expect(lines.at(-1)).toMatchObject({ msg: 'exiting now', service: 'coordinator' });
  });

  it('writes each line at once when asked to (armed crash points)', () => {
    expect(logThenExit(true)).toHaveLength(LINES + 1);
  });
});
