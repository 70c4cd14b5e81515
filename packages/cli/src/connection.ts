import { UsageError } from './cli-errors.js';

export interface Connection {
  /** Base URL of the coordinator, without a trailing slash, e.g. http://127.0.0.1:8080. */
  url: string;
  token: string;
}

export interface ConnectionSources {
  flags: { url?: string | undefined; token?: string | undefined };
  env: { FLEETPATCH_URL?: string | undefined; FLEETPATCH_TOKEN?: string | undefined };
}

/** Flags win over the environment; both are required. Called once, by main.ts. */
export function resolveConnection({ flags, env }: ConnectionSources): Connection {
  const url = (flags.url ?? env.FLEETPATCH_URL ?? '').trim();
  const token = (flags.token ?? env.FLEETPATCH_TOKEN ?? '').trim();
  if (!url) throw new UsageError('no coordinator URL: pass --url http://host:port or set FLEETPATCH_URL');
  if (!token) throw new UsageError('no API token: pass --token TOKEN or set FLEETPATCH_TOKEN');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(url)} is not a URL (expected http://host:port)`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`--url must be http:// or https://, got ${parsed.protocol}`);
  }
  return { url: url.replace(/\/+$/, ''), token };
}
