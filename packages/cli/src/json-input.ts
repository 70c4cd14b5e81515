import { readFile } from 'node:fs/promises';
import { yaml } from '@fleetpatch/shared';
import type { Document, LineCounter } from 'yaml';
import { LocalValidationError, UsageError } from './cli-errors.js';

/** A patch or rollout file as read: its value, and where each field of it was written. */
export interface InputDocument {
  value: unknown;
  /** "patch.yaml", "stdin". */
  source: string;
  /** `patch.yaml:7:9` for a field path (the nearest enclosing field written, for one left out); undefined when unknown. */
  locate(path: readonly PropertyKey[]): string | undefined;
}

/**
 * Reads a patch or rollout file — YAML, or JSON (which YAML reads too) — from a file, or from stdin
 * when `path` is "-". A `.json` file is parsed as JSON, strictly; anything else as YAML 1.2 (no
 * custom tags, duplicate keys refused). A syntax error names the file, line and column.
 */
export async function readInputDocument(path: string, stdin: () => Promise<string>): Promise<InputDocument> {
  const source = path === '-' ? 'stdin' : path;
  let text: string;
  try {
    text = path === '-' ? await stdin() : await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw new UsageError(`cannot read ${source}: ${why}`);
  }
  return parseInputDocument(text, source, /\.json$/i.test(path));
}

/** Parses text already read (`json`: strictly as JSON); positions come from the YAML parser either way. */
export function parseInputDocument(text: string, source: string, json: boolean): InputDocument {
  const { LineCounter: Lines, parseDocument } = yaml();
  const lines = new Lines();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const value = json ? parseJson(text, source) : yamlValue(doc, source, lines);
  return {
    value,
    source,
    locate: (fieldPath) => {
      // A JSON file the YAML parser cannot place (tab indentation, say) simply has no positions.
      if (doc.errors.length > 0) return undefined;
      for (let n = fieldPath.length; n >= 0; n--) {
        const node = doc.getIn(fieldPath.slice(0, n) as unknown[], true) as
          | { range?: [number, number, number] }
          | undefined;
        if (node?.range) {
          const { line, col } = lines.linePos(node.range[0]);
          return `${source}:${line}:${col}`;
        }
      }
      return undefined;
    },
  };
}

function yamlValue(doc: Document.Parsed, source: string, lines: LineCounter): unknown {
  const [first] = doc.errors;
  if (first) {
    const { line, col } = lines.linePos(first.pos[0]);
    throw new LocalValidationError(
      `${source}:${line}:${col}: not valid YAML or JSON: ${first.message.split('\n')[0]}`,
      [],
    );
  }
  return doc.toJS({ maxAliasCount: 100 });
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
