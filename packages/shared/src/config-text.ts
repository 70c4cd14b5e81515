import { createRequire } from 'node:module';

/**
 * The YAML parser, loaded on the first file that needs it (~50 ms of CPU, at every start of every
 * agent and coordinator otherwise: most read JSON). Required, not imported: parsing stays synchronous.
 */
const require = createRequire(import.meta.url);
export const yaml = (): typeof import('yaml') => require('yaml') as typeof import('yaml');

/**
 * The content of a configuration file, by its name: `.yaml` / `.yml` as YAML 1.2 (a key given twice
 * is an error, not the last one silently winning), anything else as JSON. A syntax error says the
 * file, line and column — and never echoes the file's text, which may hold tokens. What the content
 * means is for the caller's schema to say.
 */
export function parseConfigText(text: string, fileName: string): unknown {
  if (/\.ya?ml$/i.test(fileName)) {
    const error = firstYamlError(text);
    if (error) throw new Error(`${fileName}: ${error}`);
    return yaml().parseDocument(text).toJS() ?? {};
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // JSON is YAML 1.2: the YAML parser finds where it breaks (Node's message quotes the text instead).
    const where = firstYamlError(text);
    throw new Error(`${fileName}: not valid JSON${where ? `: ${where}` : ''}`);
  }
}

/** The first syntax error, as `message at line L, column C`, without the code frame (it quotes the text). */
function firstYamlError(text: string): string | undefined {
  const [error] = yaml().parseDocument(text, { prettyErrors: true, uniqueKeys: true }).errors;
  return error?.message.split('\n')[0]?.replace(/:$/, '');
}
