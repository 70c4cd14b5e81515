/**
 * Whether a process with this pid exists (signal 0 checks without sending anything). EPERM means it
 * exists under another account. A zombie, dead but not yet reaped by its parent, still counts.
 */
export function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
