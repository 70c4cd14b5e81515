import { isLoopbackHost } from '@fleetpatch/shared';
import { UsageError } from './cli-errors.js';

export interface Connection {
  /** Base URL of the coordinator, without a trailing slash, e.g. http://127.0.0.1:7420. */
  url: string;
  token: string;
  /** PEM CA certificate(s) trusted for an https:// coordinator instead of the system store. */
  ca?: string;
}

export interface ConnectionSources {
  flags: {
    url?: string | undefined;
    token?: string | undefined;
    caFile?: string | undefined;
    insecure?: boolean | undefined;
  };
  env: {
    FLEETPATCH_URL?: string | undefined;
    FLEETPATCH_TOKEN?: string | undefined;
    FLEETPATCH_CA_FILE?: string | undefined;
  };
  /** The config file's chosen context (cli-config.ts); its token file is read only if no flag or variable gave one. */
  context?:
    | {
        name: string;
        url?: string | undefined;
        caFile?: string | undefined;
        insecure?: boolean | undefined;
        token?: (() => string) | undefined;
      }
    | undefined;
  /** Reads the CA file (main.ts passes the real file system). */
  readFile(path: string): string;
}

/** Flags win over the environment, which wins over the context; URL and token are required. Called once, by main.ts. */
export function resolveConnection({ flags, env, context, readFile }: ConnectionSources): Connection {
  const url = (flags.url ?? env.FLEETPATCH_URL ?? context?.url ?? '').trim();
  const token = (flags.token ?? env.FLEETPATCH_TOKEN ?? context?.token?.() ?? '').trim();
  const caFile = (flags.caFile ?? env.FLEETPATCH_CA_FILE ?? context?.caFile ?? '').trim();
  const insecure = flags.insecure ?? context?.insecure;
  const hint = context ? '' : ', or choose a context (fleetpatch config use-context NAME)';
  if (!url) throw new UsageError(`no coordinator URL: pass --url http://host:port or set FLEETPATCH_URL${hint}`);
  if (!token) throw new UsageError(`no API token: pass --token TOKEN or set FLEETPATCH_TOKEN${hint}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(url)} is not a URL (expected http://host:port)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`--url must be http:// or https://, got ${parsed.protocol}`);
  }
  // A token sent in clear across a network is a token given away; on loopback nobody else sees it.
  if (parsed.protocol === 'http:' && !isLoopbackHost(parsed.hostname) && !insecure) {
    throw new UsageError(
      `refusing to send the API token in clear to ${parsed.host}: use https:// (with --ca-file for a private CA), or pass --insecure`,
    );
  }
  return { url: url.replace(/\/+$/, ''), token, ...(caFile ? { ca: readCa(caFile, readFile) } : {}) };
}

function readCa(file: string, readFile: (path: string) => string): string {
  let pem: string;
  try {
    pem = readFile(file);
  } catch (err) {
    throw new UsageError(
      `cannot read --ca-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca-file ${file} holds no PEM certificate`);
  return pem;
}
