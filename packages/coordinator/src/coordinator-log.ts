import { type Logger, pino } from 'pino';

/**
 * The coordinator's logger: JSON lines on stdout, written behind the event loop. Written
 * synchronously, a reconnecting fleet's "agent connected" and "agent disconnected" lines were a
 * write(2) each on the loop, ~5 % of the coordinator's CPU in a storm; now the lines that come while
 * one write is out go in the next, together. Whatever is still to be written when the process exits
 * is written then (pino's destination flushes on `exit`), so `process.exit` right after a line keeps it.
 * `synchronous`: each line written before the call returns, for a test that kills the process next.
 */
export function coordinatorLogger(level: string, { synchronous }: { synchronous: boolean }): Logger {
  return pino({ level, base: { service: 'coordinator' } }, pino.destination({ dest: 1, sync: synchronous }));
}
