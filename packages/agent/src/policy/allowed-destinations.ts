import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Loopback only: a health check looks at the host it runs on unless the host's owner says more. */
export const DEFAULT_ALLOWED_DESTINATIONS: readonly string[] = ['127.0.0.0/8', '::1', 'localhost'];

/** Resolves a name to every address it has (node:dns `lookup` with `all: true`); injectable for tests. */
export type ResolveAll = (host: string) => Promise<readonly { address: string; family: number }[]>;

export const systemResolveAll: ResolveAll = (host) => dnsLookup(host, { all: true, verbatim: true });

type Entry =
  | { kind: 'address'; list: BlockList; port: number | undefined }
  | { kind: 'name'; name: string; port: number | undefined };

/**
 * Where `http` and `tcp` health checks may connect (config `health.allowedDestinations`). An entry
 * is an address or CIDR (`127.0.0.0/8`, `::1`, `10.1.2.3`) or a host name (`localhost`,
 * `db.internal`), each optionally with a port (`10.1.2.3:8080`, `[::1]:8080`, `db.internal:5432`).
 *
 * A check may name a host only if it is listed, and it may only *connect* to an address that is
 * listed: a name is resolved, and the connection goes to a resolved address that passed (never to a
 * second lookup's answer), so a DNS answer that changes between check and use gains nothing.
 */
export class AllowedDestinations {
  private readonly entries: readonly Entry[];

  constructor(
    readonly patterns: readonly string[],
    private readonly resolveAll: ResolveAll = systemResolveAll,
  ) {
    this.entries = patterns.map(parseDestination);
  }

  /** Why `host:port` may not be named by a check, or undefined when it may. Pure: no DNS. */
  refusalFor(host: string, port: number): string | undefined {
    const bare = unbracket(host);
    if (isIP(bare) !== 0) {
      return this.allowsAddress(bare, port) ? undefined : `${describe(host, port)} is not an allowed destination`;
    }
    const name = bare.toLowerCase().replace(/\.$/, '');
    const listed = this.entries.some(
      (e) => e.kind === 'name' && e.name === name && (e.port === undefined || e.port === port),
    );
    return listed ? undefined : `host ${describe(host, port)} is not an allowed destination`;
  }

  /**
   * The address to connect to for `host:port`: the host itself if it is an allowed address, else
   * the first address its name resolves to that is allowed. Throws (with a reason) when there is none.
   */
  async addressFor(host: string, port: number): Promise<{ address: string; family: 4 | 6 }> {
    const refusal = this.refusalFor(host, port);
    if (refusal !== undefined) throw new Error(refusal);
    const bare = unbracket(host);
    const family = isIP(bare);
    if (family === 4 || family === 6) return { address: bare, family };
    const addresses = await this.resolveAll(bare);
    const allowed = addresses.find((a) => this.allowsAddress(a.address, port));
    if (allowed === undefined) {
      const seen = addresses.map((a) => a.address).join(', ') || 'nothing';
      throw new Error(`${describe(host, port)} resolves to ${seen}, not an allowed destination`);
    }
    return { address: allowed.address, family: allowed.family === 6 ? 6 : 4 };
  }

  allowsAddress(address: string, port: number): boolean {
    const plain = unmapIpv4(address);
    const type = isIP(plain) === 6 ? 'ipv6' : 'ipv4';
    return this.entries.some(
      (e) => e.kind === 'address' && (e.port === undefined || e.port === port) && e.list.check(plain, type),
    );
  }
}

/** Throws on an entry that is neither an address, a CIDR nor a host name (a configuration error). */
export function parseDestination(pattern: string): Entry {
  let host = pattern;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(pattern);
  if (bracketed) {
    host = bracketed[1] ?? '';
    port = bracketed[2] === undefined ? undefined : Number(bracketed[2]);
  } else if ((pattern.match(/:/g) ?? []).length === 1) {
    const at = pattern.lastIndexOf(':');
    host = pattern.slice(0, at);
    port = Number(pattern.slice(at + 1));
  }
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new Error(`health.allowedDestinations: ${JSON.stringify(pattern)} has no valid port`);
  }
  const [address, bits, ...more] = host.split('/');
  const family = isIP(address ?? '');
  if (family !== 0 && more.length === 0) {
    const list = new BlockList();
    const type = family === 6 ? 'ipv6' : 'ipv4';
    const prefix = bits === undefined ? (family === 6 ? 128 : 32) : Number(bits);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 6 ? 128 : 32) || bits === '') {
      throw new Error(`health.allowedDestinations: ${JSON.stringify(pattern)} has an invalid prefix length`);
    }
    list.addSubnet(address ?? '', prefix, type);
    return { kind: 'address', list, port };
  }
  if (/^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(host)) {
    return { kind: 'name', name: host.toLowerCase(), port };
  }
  throw new Error(
    `health.allowedDestinations: ${JSON.stringify(pattern)} is not an address, a CIDR or a host name (with an optional :port)`,
  );
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** `::ffff:127.0.0.1` is 127.0.0.1: judged as the IPv4 address it reaches. */
function unmapIpv4(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped?.[1] ?? address;
}

function describe(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
