import { oneLine } from './terminal-text.js';

/**
 * Every exit code of `fleetpatch`, in one table (README and `fleetpatch --help` print EXIT_CODE_TABLE):
 * a runbook can tell each outcome of a watched rollout, a timeout, an outage and a typo apart.
 * `compliance` and `rollout preflight` give 3 and 4 their own sense (exposed / would not apply;
 * unknown / did not answer) so a script can gate on them.
 */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  exposed: 3,
  unknown: 4,
  wouldNotApply: 3,
  unanswered: 4,
  unreachable: 5,
  watchTimedOut: 6,
  halted: 7,
  aborted: 8,
  reverted: 9,
  revertFailed: 10,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The table as people read it: `fleetpatch --help`, the README (a test keeps them equal). */
export const EXIT_CODE_TABLE: readonly (readonly [ExitCode, string])[] = [
  [ExitCode.ok, 'done; a watched rollout succeeded'],
  [ExitCode.failed, 'the coordinator refused (not allowed, not found, wrong state) or another error'],
  [
    ExitCode.usage,
    'bad input: command line, patch or rollout file, config, or a request the coordinator found invalid',
  ],
  [ExitCode.exposed, 'preflight: some host would fail or is blocked; compliance: some host is exposed'],
  [ExitCode.unknown, 'preflight: some host did not answer; compliance: some host cannot be judged'],
  [ExitCode.unreachable, 'coordinator unreachable (a watch: for longer than --reconnect-for)'],
  [ExitCode.watchTimedOut, 'status --watch: --timeout passed before the rollout reached a final state'],
  [ExitCode.halted, 'status --watch: the rollout halted'],
  [ExitCode.aborted, 'status --watch: the rollout was aborted'],
  [ExitCode.reverted, 'status --watch: the rollout was reverted'],
  [ExitCode.revertFailed, 'status --watch: the revert failed on some host'],
];

export function formatExitCodeTable(): string {
  return ['Exit codes:', ...EXIT_CODE_TABLE.map(([code, meaning]) => `  ${String(code).padStart(2)}  ${meaning}`)].join(
    '\n',
  );
}

export interface FieldIssue {
  path: string;
  message: string;
  /** Where the field was written, `patch.yaml:7:9`, when it came from a file. */
  at?: string;
}

/** The command line itself is wrong (missing connection, contradictory flags): bad input, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Input checked locally before anything was sent, and refused: bad input (exit 2), nothing stored. */
export class LocalValidationError extends Error {
  override readonly name = 'LocalValidationError';
  constructor(
    message: string,
    readonly issues: readonly FieldIssue[],
  ) {
    super(message);
  }
}

/** The coordinator answered with an error body `{ error: { code, message, details } }`. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues: readonly FieldIssue[],
  ) {
    super(message);
  }
}

/** The coordinator could not be reached at all: exit 5. */
export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
}

/** The coordinator's refusals that mean "what you sent is wrong", not "you may not" or "not now". */
const BAD_INPUT_CODES: ReadonlySet<string> = new Set([
  'validation_failed',
  'payload_too_large',
  'unsupported_media_type',
]);

/**
 * Lines for stderr and the exit code of any error; never a stack trace. The message and issues may
 * be the server's text (quoting what an agent sent): each stays on its line, escaped.
 */
export function describeError(err: unknown): { lines: string[]; exitCode: ExitCode } {
  const { message, issues, exitCode } = errorSummary(err);
  return {
    lines: [
      oneLine`error: ${message}`,
      ...issues.map((i) => oneLine`  ${i.at ? `${i.at}: ` : ''}${i.path}: ${i.message}`),
    ],
    exitCode,
  };
}

/** `--json`: the same error as one JSON object on stderr, for scripts. */
export function describeErrorAsJson(err: unknown): { text: string; exitCode: ExitCode } {
  const { message, issues, exitCode, code } = errorSummary(err);
  return { text: JSON.stringify({ error: { code, message, exitCode, issues } }), exitCode };
}

function errorSummary(err: unknown): {
  message: string;
  issues: readonly FieldIssue[];
  exitCode: ExitCode;
  code: string;
} {
  if (err instanceof UsageError) return { message: err.message, issues: [], exitCode: ExitCode.usage, code: 'usage' };
  if (err instanceof LocalValidationError)
    return { message: err.message, issues: err.issues, exitCode: ExitCode.usage, code: 'invalid_input' };
  if (err instanceof ApiError) {
    const exitCode = BAD_INPUT_CODES.has(err.code) ? ExitCode.usage : ExitCode.failed;
    return { message: err.message, issues: err.issues, exitCode, code: err.code };
  }
  if (err instanceof ConnectionError)
    return { message: err.message, issues: [], exitCode: ExitCode.unreachable, code: 'unreachable' };
  const message = err instanceof Error ? err.message : String(err);
  return { message, issues: [], exitCode: ExitCode.failed, code: 'error' };
}

/** Zod issues (or the server's `details.issues`) as dotted field paths. */
export function toFieldIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
  prefix = '',
  locate?: (path: readonly PropertyKey[]) => string | undefined,
): FieldIssue[] {
  return issues.map((issue) => {
    const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
    const at = locate?.(issue.path);
    return { path: path || '(root)', message: issue.message, ...(at ? { at } : {}) };
  });
}
