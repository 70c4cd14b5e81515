import { type Logger, pino } from 'pino';

/** A logger that keeps every line it writes, for tests that check what the engine logged. */
export function capturingLog(): { log: Logger; lines: { level: number; msg: string; [key: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}
