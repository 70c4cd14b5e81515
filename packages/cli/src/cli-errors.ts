/**
 * Exit codes: 0 done, 1 refused or failed (server said no, bad input, unreachable), 2 the command line
 * was wrong. `compliance` adds 3: some host is exposed, and 4: none is exposed but some cannot be
 * judged (unknown) — so that a script can gate on "every host is fixed or has none of it".
 * `rollout preflight` gives the same two codes their dry-run sense: 3 some host would fail or is
 * blocked, 4 none is but some did not answer (offline, no answer in time).
 */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  exposed: 3,
  unknown: 4,
  wouldNotApply: 3,
  unanswered: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface FieldIssue {
  path: string;
  message: string;
}

/** The command line itself is wrong (missing connection, contradictory flags): exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Input checked locally before anything was sent, and refused: exit 1, nothing stored. */
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

/** The coordinator could not be reached at all. */
export class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
}

/** Lines for stderr and the exit code of any error; never a stack trace. */
export function describeError(err: unknown): { lines: string[]; exitCode: ExitCode } {
  if (err instanceof UsageError) return { lines: [`error: ${err.message}`], exitCode: ExitCode.usage };
  if (err instanceof LocalValidationError || err instanceof ApiError) {
    return {
      lines: [`error: ${err.message}`, ...err.issues.map((i) => `  ${i.path}: ${i.message}`)],
      exitCode: ExitCode.failed,
    };
  }
  if (err instanceof ConnectionError) return { lines: [`error: ${err.message}`], exitCode: ExitCode.failed };
  const message = err instanceof Error ? err.message : String(err);
  return { lines: [`error: ${message}`], exitCode: ExitCode.failed };
}

/** Zod issues (or the server's `details.issues`) as dotted field paths. */
export function toFieldIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
  prefix = '',
): FieldIssue[] {
  return issues.map((issue) => {
    const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
    return { path: path || '(root)', message: issue.message };
  });
}
