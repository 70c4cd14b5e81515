import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Runs a full garbage collection every `everyMs` until the returned function is called. For tests of
 * what must survive a collection (a timeout nothing else holds); test workers run without
 * `--expose-gc`, so the flag is set at run time and `gc` taken from a fresh context.
 */
export function collectGarbageEvery(everyMs: number): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const timer = setInterval(gc, everyMs);
  return () => clearInterval(timer);
}
