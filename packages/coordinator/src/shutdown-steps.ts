import type { Logger } from 'pino';

/** One thing to close at shutdown, named for the log. */
export interface ShutdownStep {
  name: string;
  close(): void | Promise<void>;
}

/**
 * Runs every step, in order, even when one throws: a hub that fails to close must not leave the
 * webhook notifier running. Each failure is logged as it happens; all of them are thrown together
 * at the end, so whoever closes still learns the shutdown was not clean.
 */
export async function runShutdownSteps(steps: readonly ShutdownStep[], log: Logger): Promise<void> {
  const failures: unknown[] = [];
  for (const step of steps) {
    try {
      await step.close();
    } catch (err) {
      log.error({ err, step: step.name }, 'shutdown step failed');
      failures.push(err);
    }
  }
  if (failures.length > 0) {
    throw new AggregateError(failures, `shutdown: ${failures.length} of ${steps.length} steps failed`);
  }
}
