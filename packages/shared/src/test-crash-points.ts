/**
 * Test-only crash points, shared by both daemons: `FLEETPATCH_TEST_CRASH_AT` names (comma-separated)
 * the steps at which the process SIGKILLs itself, so the crash matrices can prove recovery from
 * exactly there. Unset, nothing is armed and the daemons wire no checkpoint at all.
 */

/**
 * Test-only pause points: `FLEETPATCH_TEST_PAUSE_AT` names (comma-separated) the steps at which the
 * process stops itself (SIGSTOP), the first time each is reached, until the test sends SIGCONT: a
 * fault scenario injects a fault (fills a disk, say) exactly between two steps, then lets it go on.
 */
export function armedPausePoints(env: NodeJS.ProcessEnv): ReadonlySet<string> {
  return new Set((env.FLEETPATCH_TEST_PAUSE_AT ?? '').split(',').filter(Boolean));
}

/**
 * A checkpoint that stops this process at an armed pause point, once per point, after a log line
 * naming it. Undefined when nothing is armed.
 */
export function pausingCheckpoint(
  armed: ReadonlySet<string>,
  log: { warn(fields: { checkpoint: string }, message: string): void },
): ((name: string) => void) | undefined {
  if (armed.size === 0) return undefined;
  const reached = new Set<string>();
  return (name) => {
    if (!armed.has(name) || reached.has(name)) return;
    reached.add(name);
    log.warn({ checkpoint: name }, 'test pause point reached: SIGSTOP until SIGCONT');
    process.kill(process.pid, 'SIGSTOP');
  };
}

/** The crash points armed by the environment; empty when FLEETPATCH_TEST_CRASH_AT is unset. */
export function armedCrashPoints(env: NodeJS.ProcessEnv): ReadonlySet<string> {
  return new Set((env.FLEETPATCH_TEST_CRASH_AT ?? '').split(',').filter(Boolean));
}

/**
 * A checkpoint that kills this process at an armed point, after one log line naming it (the log
 * must write synchronously, or the line dies with the process). Undefined when nothing is armed.
 */
export function crashingCheckpoint(
  armed: ReadonlySet<string>,
  log: { warn(fields: { checkpoint: string }, message: string): void },
): ((name: string) => void) | undefined {
  if (armed.size === 0) return undefined;
  return (name) => {
    if (!armed.has(name)) return;
    log.warn({ checkpoint: name }, 'test crash point reached: SIGKILL');
    process.kill(process.pid, 'SIGKILL');
  };
}
