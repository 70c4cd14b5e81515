import { type Clock, systemClock } from '@fleetpatch/shared';

export interface AuthFailureLimits {
  /** Failed authentications an address may make within one window before it is refused. */
  maxFailures: number;
  windowSeconds: number;
  /** Addresses remembered at once; the oldest is forgotten first, so memory stays bounded. */
  trackedAddresses: number;
}

interface Window {
  failures: number;
  endsAt: number;
}

/**
 * Counts failed authentications per remote address in fixed windows. An address over the limit is
 * refused until its window ends, before its token is even hashed. Bounded: many addresses evict the
 * oldest windows (those nearest their end) rather than grow the map.
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly limits: AuthFailureLimits,
    private readonly clock: Pick<Clock, 'now'> = systemClock,
  ) {}

  /** Whole seconds until `address` may try again; 0 when it may now. */
  retryAfterSeconds(address: string): number {
    const window = this.current(address);
    if (!window || window.failures < this.limits.maxFailures) return 0;
    return Math.max(1, Math.ceil((window.endsAt - this.clock.now()) / 1000));
  }

  /** Counts one failure; true when it is the one that reaches the limit (worth one log line). */
  recordFailure(address: string): boolean {
    let window = this.current(address);
    if (!window) {
      window = { failures: 0, endsAt: this.clock.now() + this.limits.windowSeconds * 1000 };
      this.windows.set(address, window);
      for (const oldest of this.windows.keys()) {
        if (this.windows.size <= this.limits.trackedAddresses) break;
        this.windows.delete(oldest);
      }
    }
    window.failures += 1;
    return window.failures === this.limits.maxFailures;
  }

  /** How many addresses are remembered (for tests of the bound). */
  get size(): number {
    return this.windows.size;
  }

  private current(address: string): Window | undefined {
    const window = this.windows.get(address);
    if (window && this.clock.now() >= window.endsAt) {
      this.windows.delete(address);
      return undefined;
    }
    return window;
  }
}
