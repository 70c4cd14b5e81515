import { dirname, isAbsolute, join } from 'node:path';
import { yaml } from '@fleetpatch/shared';
import { z } from 'zod';
import { LocalValidationError, toFieldIssues, UsageError } from './cli-errors.js';
import { parseInputDocument } from './json-input.js';

/**
 * The CLI's config file: named contexts, like a kubeconfig. `FLEETPATCH_CONFIG` names it, else
 * `$XDG_CONFIG_HOME/fleetpatch/config.yaml` (`~/.config/…`). YAML or JSON:
 *
 *   currentContext: prod
 *   contexts:
 *     prod:
 *       url: https://fleet.example.com:7420
 *       tokenFile: prod.token          # relative paths are from the config file's directory
 *       caFile: /etc/fleetpatch/ca.pem
 *       signKey: alice.pem
 *
 * It holds no secret itself: a token lives in its own file, which must not be readable by group or
 * others (0600), as ssh insists for its keys. Flags win over the environment, which wins over the context.
 */
const ContextSchema = z
  .object({
    url: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    caFile: z.string().min(1).optional(),
    signKey: z.string().min(1).optional(),
    insecure: z.boolean().optional(),
  })
  .strict();
export type CliContextEntry = z.infer<typeof ContextSchema>;

const ConfigSchema = z
  .object({
    currentContext: z.string().min(1).optional(),
    contexts: z
      .record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a context name is letters, digits, . _ -'), ContextSchema)
      .default({}),
  })
  .strict();
export type CliConfig = z.infer<typeof ConfigSchema>;

/** The file system as the config needs it (main.ts passes node:fs; tests a directory of their own). */
export interface ConfigFiles {
  readFile(path: string): string;
  writeFile(path: string, text: string): void;
  /** The permission bits of a file (stat's mode & 0o777). */
  mode(path: string): number;
  exists(path: string): boolean;
}

export function configPath(
  env: { FLEETPATCH_CONFIG?: string | undefined; XDG_CONFIG_HOME?: string | undefined },
  home: string,
): string {
  if (env.FLEETPATCH_CONFIG) return env.FLEETPATCH_CONFIG;
  return join(env.XDG_CONFIG_HOME || join(home, '.config'), 'fleetpatch', 'config.yaml');
}

/** The config at `path`, or an empty one when there is no file; a bad file is bad input naming line and field. */
export function loadConfig(path: string, files: ConfigFiles): CliConfig {
  if (!files.exists(path)) return { contexts: {} };
  const doc = parseInputDocument(files.readFile(path), path, /\.json$/i.test(path));
  const parsed = ConfigSchema.safeParse(doc.value ?? {});
  if (!parsed.success) {
    throw new LocalValidationError(
      `${path} is not a valid fleetpatch config`,
      toFieldIssues(parsed.error.issues, '', doc.locate),
    );
  }
  return parsed.data;
}

/** The chosen context (`--context`, else `currentContext`) with its paths made absolute; undefined when none is chosen. */
export function selectContext(
  config: CliConfig,
  path: string,
  name: string | undefined,
): (CliContextEntry & { name: string }) | undefined {
  const chosen = name ?? config.currentContext;
  if (chosen === undefined) return undefined;
  const entry = config.contexts[chosen];
  if (!entry) {
    const known = Object.keys(config.contexts);
    throw new UsageError(
      `no context ${JSON.stringify(chosen)} in ${path}${known.length > 0 ? ` (it has: ${known.join(', ')})` : ' (it has none)'}`,
    );
  }
  const from = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : join(dirname(path), p));
  return {
    name: chosen,
    ...entry,
    ...(entry.tokenFile ? { tokenFile: from(entry.tokenFile) } : {}),
    ...(entry.caFile ? { caFile: from(entry.caFile) } : {}),
    ...(entry.signKey ? { signKey: from(entry.signKey) } : {}),
  };
}

/** A context's token file: refused when group or others may read it, and when empty. */
export function readTokenFile(path: string, files: ConfigFiles): string {
  let mode: number;
  let token: string;
  try {
    mode = files.mode(path);
    token = files.readFile(path).trim();
  } catch (err) {
    throw new UsageError(
      `cannot read token file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if ((mode & 0o077) !== 0) {
    throw new UsageError(
      `token file ${path} is readable by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 ${path}`,
    );
  }
  if (!token) throw new UsageError(`token file ${path} is empty`);
  return token;
}

/** `config use-context NAME`: sets currentContext, keeping the file's comments and layout. */
export function useContext(path: string, name: string, files: ConfigFiles): void {
  const config = loadConfig(path, files);
  selectContext(config, path, name); // refuses a name the file does not have
  const doc = yaml().parseDocument(files.readFile(path));
  doc.set('currentContext', name);
  // A JSON config stays JSON: YAML's flow style would still read as YAML, but not as JSON.
  files.writeFile(path, /\.json$/i.test(path) ? `${JSON.stringify(doc.toJS(), null, 2)}\n` : doc.toString());
}
