import type { SectionGuard } from '../store/one-at-a-time.js';
import type { DedicatedConnection } from './dedicated-connection.js';

/** The advisory lock key of engine steps: the bytes of "fpsteps!" as a signed 64-bit integer. */
export const ENGINE_STEP_LOCK_KEY = '7381526733015511841';

/**
 * Engine steps one at a time across the whole coordinator group, as they already are within one
 * coordinator (OneAtATime). Every step reads, decides and writes (a host is queued → dispatch it);
 * two coordinators deciding on the same rows at once could both dispatch one host. Holding one
 * session-level advisory lock for the step makes the group behave as one engine, whoever received
 * the report or the verb. The lock lives on a session of its own: if the coordinator dies or loses
 * the database, the server lets it go with the session.
 *
 * What it costs: two round trips per step, and steps of different coordinators wait for each other.
 * Sockets, TLS, signature checks and the API still spread over the coordinators.
 */
export class EngineStepLock implements SectionGuard {
  constructor(private readonly connection: DedicatedConnection) {}

  async enter(): Promise<() => Promise<void>> {
    const client = await this.connection.get();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [ENGINE_STEP_LOCK_KEY]);
    } catch (err) {
      this.connection.drop(client);
      throw err;
    }
    return async () => {
      try {
        await client.query('SELECT pg_advisory_unlock($1)', [ENGINE_STEP_LOCK_KEY]);
      } catch {
        this.connection.drop(client); // the session is gone, and the lock with it
      }
    };
  }
}
