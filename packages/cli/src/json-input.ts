import { readFile } from 'node:fs/promises';
import { LocalValidationError, UsageError } from './cli-errors.js';

/** Reads a JSON document from a file, or from stdin when `path` is "-". */
export async function readJsonInput(path: string, stdin: () => Promise<string>): Promise<unknown> {
  const source = path === '-' ? 'stdin' : path;
  let text: string;
  try {
    text = path === '-' ? await stdin() : await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw new UsageError(`cannot read ${source}: ${why}`);
  }
  return parseJson(text, source);
}

export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LocalValidationError(`${source} is not valid JSON: ${(err as Error).message}`, []);
  }
}

/** Collects all of stdin as UTF-8. */
export async function readAll(stream: AsyncIterable<Buffer | string>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}
