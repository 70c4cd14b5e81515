import { type Clock, isoAt } from '@fleetpatch/shared';
import type { Store } from '../store/store.js';

export const API_REFUSED_EVENT = 'security.api_refused';

export interface RefusalAuditLimits {
  windowSeconds: number;
  maxEventsPerWindow: number;
}

/** One refused API call: what was asked, by whom (the token's name when it was known), from where. */
export interface ApiRefusal {
  status: 401 | 403;
  method: string;
  /** The route pattern (`/v1/rollouts/:id`), never the raw URL: ids and query strings stay out. */
  route: string;
  remoteAddress: string;
  tokenName: string | null;
}

/**
 * Writes refused API calls to the audit trail as `security.api_refused` rows, within a budget per
 * fixed window: one row per (status, address, route), and `maxEventsPerWindow` rows in all. Whatever
 * the budget holds back is counted, and the count goes into the next row written (`suppressedBefore`),
 * so the trail says that a flood happened and how big it was without holding one row per request.
 * Memory is bounded too: only the keys written in the current window are remembered.
 */
export class RefusalAudit {
  private windowEndsAt = 0;
  private readonly written = new Set<string>();
  private suppressed = 0;

  constructor(
    private readonly store: Store,
    private readonly limits: RefusalAuditLimits,
    private readonly clock: Pick<Clock, 'now'>,
  ) {}

  async record(refusal: ApiRefusal): Promise<void> {
    const now = this.clock.now();
    if (now >= this.windowEndsAt) {
      this.windowEndsAt = now + this.limits.windowSeconds * 1000;
      this.written.clear();
    }
    const key = `${refusal.status} ${refusal.remoteAddress} ${refusal.route}`;
    if (this.written.has(key) || this.written.size >= this.limits.maxEventsPerWindow) {
      this.suppressed += 1;
      return;
    }
    this.written.add(key);
    const suppressedBefore = this.suppressed;
    this.suppressed = 0;
    const { store } = this;
    await store.transaction(
      async () =>
        await store.appendEvent(
          {
            actor: refusal.tokenName ?? 'anonymous',
            type: API_REFUSED_EVENT,
            data: {
              status: refusal.status,
              method: refusal.method,
              route: refusal.route,
              remoteAddress: refusal.remoteAddress,
              suppressedBefore,
            },
          },
          isoAt(this.clock),
        ),
    );
  }
}
