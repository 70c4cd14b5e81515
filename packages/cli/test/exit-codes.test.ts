import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ApiError,
  ConnectionError,
  describeError,
  describeErrorAsJson,
  EXIT_CODE_TABLE,
  ExitCode,
  formatExitCodeTable,
  LocalValidationError,
  UsageError,
} from '../src/cli-errors.js';
import { watchExitCode } from '../src/watch-rollout.js';
import { status } from './status-fixture.js';

describe('exit codes a runbook can use', () => {
  it('tells every outcome of a watch, an outage and bad input apart', () => {
    const final = (state: 'succeeded' | 'halted' | 'aborted' | 'reverted' | 'revert_failed') =>
      watchExitCode({ kind: 'final', source: { kind: 'status', status: status({ state }) } });
    const codes = [
      final('succeeded'),
      final('halted'),
      final('aborted'),
      final('reverted'),
      final('revert_failed'),
      watchExitCode({ kind: 'timed_out', source: undefined }),
      watchExitCode({ kind: 'unreachable', source: undefined, reason: 'refused' }),
      describeError(new UsageError('no URL')).exitCode,
    ];
    expect(codes).toEqual([0, 7, 8, 9, 10, 6, 5, 2]);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('counts what was sent wrong as bad input, a refusal as 1, an unreachable coordinator as 5', () => {
    expect(describeError(new LocalValidationError('p.json is not a valid patch', [])).exitCode).toBe(ExitCode.usage);
    expect(describeError(new ApiError(400, 'validation_failed', 'bad', [])).exitCode).toBe(ExitCode.usage);
    expect(describeError(new ApiError(403, 'forbidden', 'no', [])).exitCode).toBe(ExitCode.failed);
    expect(describeError(new ApiError(409, 'illegal_transition', 'not now', [])).exitCode).toBe(ExitCode.failed);
    expect(describeError(new ConnectionError('cannot reach')).exitCode).toBe(ExitCode.unreachable);
  });

  it('gives each code one line in the table --help prints, and the README has the same table', () => {
    const numbers = EXIT_CODE_TABLE.map(([code]) => code);
    expect(new Set(numbers).size).toBe(numbers.length);
    const help = formatExitCodeTable();
    const readme = readFileSync(join(import.meta.dirname, '..', '..', '..', 'README.md'), 'utf8');
    // The README's rows `| \`7\` | meaning |`, whatever padding the formatter gave them.
    const rows = readme
      .split('\n')
      .map((line) => /^\|\s*`(\d+)`\s*\|\s*(.*?)\s*\|$/.exec(line))
      .filter((m) => m !== null)
      .map((m) => [Number(m[1]), m[2]]);
    expect(rows).toEqual(EXIT_CODE_TABLE.map(([code, meaning]) => [code, meaning]));
    for (const [code, meaning] of EXIT_CODE_TABLE) expect(help).toContain(`${String(code).padStart(2)}  ${meaning}`);
  });

  it("keeps the server's error message and each issue on their own lines, whatever newline they quote", () => {
    const { lines } = describeError(
      new ApiError(409, 'illegal_transition', 'host web-1 said: disk full\nerror: none, all good', [
        { path: 'reason', message: 'too long\r\nrollout ro_1 succeeded' },
      ]),
    );
    expect(lines).toEqual([
      'error: host web-1 said: disk full\\u000aerror: none, all good',
      '  reason: too long\\u000d\\u000arollout ro_1 succeeded',
    ]);
  });

  it('writes an error as one JSON object for --json, with the same exit code', () => {
    const { text, exitCode } = describeErrorAsJson(
      new ApiError(400, 'validation_failed', 'not a valid rollout', [{ path: 'waves.0', message: 'too big' }]),
    );
    expect(exitCode).toBe(2);
    expect(JSON.parse(text)).toEqual({
      error: {
        code: 'validation_failed',
        message: 'not a valid rollout',
        exitCode: 2,
        issues: [{ path: 'waves.0', message: 'too big' }],
      },
    });
  });
});
