import { readFileSync } from 'node:fs';
import { ErrorCode, FleetError } from '@fleetpatch/shared';

/** Where user and group names are looked up. */
export interface AccountDatabase {
  passwdPath: string;
  groupPath: string;
}

/**
 * The real host's files, never a path under the driver's rootDir: ownership is applied by this
 * kernel, so names must mean what they mean to it. Accounts served only by NSS (LDAP, sssd) are
 * not seen; patches for them must use numeric ids.
 */
export const HOST_ACCOUNT_DATABASE: AccountDatabase = { passwdPath: '/etc/passwd', groupPath: '/etc/group' };

/** (uid_t)-1 tells chown "leave unchanged", so it can never be a real id. */
const MAX_ID = 0xffff_fffe;

export async function resolveUid(owner: string, database: AccountDatabase = HOST_ACCOUNT_DATABASE): Promise<number> {
  return resolveId(owner, 'user', database.passwdPath);
}

export async function resolveGid(group: string, database: AccountDatabase = HOST_ACCOUNT_DATABASE): Promise<number> {
  return resolveId(group, 'group', database.groupPath);
}

async function resolveId(nameOrId: string, kind: 'user' | 'group', file: string): Promise<number> {
  if (/^\d+$/.test(nameOrId)) {
    const id = Number(nameOrId);
    if (!Number.isSafeInteger(id) || id > MAX_ID) {
      throw new FleetError(ErrorCode.preconditionFailed, `${kind} id ${nameOrId} is out of range`, {
        [kind]: nameOrId,
      });
    }
    return id;
  }
  // Read at every use, so a name means what it means to the kernel now; synchronously, as the file
  // driver's other reads (see fs/atomic-file.ts): passwd and group are a few kilobytes.
  const id = findAccountId(readFileSync(file, 'utf8'), nameOrId);
  if (id === undefined) {
    throw new FleetError(ErrorCode.preconditionFailed, `unknown ${kind} ${JSON.stringify(nameOrId)} (not in ${file})`, {
      [kind]: nameOrId,
    });
  }
  return id;
}

/**
 * Parses passwd(5) or group(5): both keep the name in field 1 and the numeric id in field 3.
 * Malformed lines are skipped rather than fatal, and the first entry for a name wins, as with
 * glibc's files backend.
 */
export function parseAccountFile(text: string): Map<string, number> {
  const ids = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    const name = fields[0];
    const id = idOf(fields[2]);
    if (name === undefined || name === '' || id === undefined || ids.has(name)) continue;
    ids.set(name, id);
  }
  return ids;
}

/**
 * `parseAccountFile(text).get(name)`, without splitting every line of the file into fields: only a
 * line that starts with `name:` is. The agent looks up an owner and a group in each phase of a file
 * order, and parsing the whole file for each took more CPU than reading it.
 */
export function findAccountId(text: string, name: string): number | undefined {
  // Never a name parseAccountFile keeps: it would match a line under another name, or a comment. (A
  // name with a newline can match only across two lines, and the line cut at the first has no id.)
  if (name === '' || name.startsWith('#') || name.includes(':')) return undefined;
  const prefix = `${name}:`;
  for (let start = 0; start < text.length; ) {
    const newline = text.indexOf('\n', start);
    const end = newline === -1 ? text.length : newline;
    if (text.startsWith(prefix, start)) {
      const id = idOf(text.slice(start, end).split(':')[2]);
      if (id !== undefined) return id;
    }
    start = end + 1;
  }
  return undefined;
}

/** Field 3 of an account line as an id; undefined when it is missing, not decimal digits, or out of range. */
function idOf(field: string | undefined): number | undefined {
  if (field === undefined || !/^\d+$/.test(field)) return undefined;
  const id = Number(field);
  return id > MAX_ID ? undefined : id;
}
