import { createHash, timingSafeEqual } from 'node:crypto';
import { ErrorCode, FleetError } from '@fleetpatch/shared';
import type { FastifyRequest } from 'fastify';
import type { ApiToken, Role } from '../config.js';

export interface Caller {
  name: string;
  role: Role;
}

/** What each role may do. Approving is its own right so that four eyes means two people. */
const PERMISSIONS: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  viewer: new Set(['read']),
  operator: new Set(['read', 'write']),
  approver: new Set(['read', 'approve']),
  admin: new Set(['read', 'write', 'approve', 'admin']),
};
export type Permission = 'read' | 'write' | 'approve' | 'admin';

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Resolves bearer tokens to named callers. Tokens are compared by hash, in constant time. */
export class ApiAuth {
  private readonly tokens: { hash: Buffer; caller: Caller }[];

  constructor(tokens: readonly ApiToken[]) {
    this.tokens = tokens.map((t) => ({
      hash: Buffer.from(t.tokenSha256 ?? sha256Hex(t.token as string), 'hex'),
      caller: { name: t.name, role: t.role },
    }));
  }

  authenticate(request: FastifyRequest): Caller {
    const header = request.headers.authorization ?? '';
    if (!header.startsWith('Bearer ')) throw new FleetError(ErrorCode.unauthorized, 'missing bearer token');
    const hash = Buffer.from(sha256Hex(header.slice('Bearer '.length).trim()), 'hex');
    const match = this.tokens.find((t) => timingSafeEqual(t.hash, hash));
    if (!match) throw new FleetError(ErrorCode.unauthorized, 'unknown API token');
    return match.caller;
  }

  require(request: FastifyRequest, permission: Permission): Caller {
    const caller = this.authenticate(request);
    if (!PERMISSIONS[caller.role].has(permission)) {
      throw new FleetError(ErrorCode.forbidden, `${caller.name} (${caller.role}) may not ${permission}`);
    }
    return caller;
  }
}
