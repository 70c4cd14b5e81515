import { createHash, timingSafeEqual } from 'node:crypto';
import type { ApiToken, Role } from '../config.js';

export interface Caller {
  name: string;
  role: Role;
}

export type Permission = 'read' | 'write' | 'approve' | 'sign-revert' | 'admin';

/**
 * What each role may do. Approving is its own right so that four eyes means two people. Signing a
 * signed rollout's revert statement is for whoever may revert (operators) and whoever may approve
 * (approvers): the first signer is usually the one, the second the other.
 */
const PERMISSIONS: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  viewer: new Set(['read']),
  operator: new Set(['read', 'write', 'sign-revert']),
  approver: new Set(['read', 'approve', 'sign-revert']),
  admin: new Set(['read', 'write', 'approve', 'sign-revert', 'admin']),
};

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** The hash an API token is known by, whether the config gives the token or only its hash. */
export function apiTokenHash(token: ApiToken): string {
  return token.tokenSha256 ?? sha256Hex(token.token as string);
}

export function mayDo(caller: Caller, permission: Permission): boolean {
  return PERMISSIONS[caller.role].has(permission);
}

/** Everything a role may do, in a fixed order: what `GET /v1/whoami` tells the dashboard. */
export function permissionsOf(role: Role): Permission[] {
  const all: Permission[] = ['read', 'write', 'approve', 'sign-revert', 'admin'];
  return all.filter((permission) => PERMISSIONS[role].has(permission));
}

/** Resolves bearer tokens to named callers. Tokens are compared by hash, in constant time. */
export class ApiAuth {
  private readonly tokens: { hash: Buffer; caller: Caller }[];

  constructor(tokens: readonly ApiToken[]) {
    this.tokens = tokens.map((t) => ({
      hash: Buffer.from(apiTokenHash(t), 'hex'),
      caller: { name: t.name, role: t.role },
    }));
  }

  /** The caller an `Authorization` header names, or why it names none. */
  authenticate(authorization: string | undefined): Caller | 'missing bearer token' | 'unknown API token' {
    const header = authorization ?? '';
    if (!header.startsWith('Bearer ')) return 'missing bearer token';
    const hash = Buffer.from(sha256Hex(header.slice('Bearer '.length).trim()), 'hex');
    const match = this.tokens.find((t) => timingSafeEqual(t.hash, hash));
    return match ? match.caller : 'unknown API token';
  }
}
