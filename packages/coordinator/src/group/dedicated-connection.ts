import pg from 'pg';

/**
 * One PostgreSQL session of its own, outside the store's pool: what a session-level advisory lock
 * and LISTEN need (both belong to the session that took them). A connection that fails is dropped
 * and the next `get()` opens a new one; whatever the old session held (its lock, its LISTENs) was
 * released by the server when it went.
 */
export class DedicatedConnection {
  private client: pg.Client | undefined;
  private opening: Promise<pg.Client> | undefined;
  private closed = false;

  constructor(
    private readonly url: string,
    /** Run on each new session before it is handed out (LISTEN again after a reconnect). */
    private readonly onOpen: (client: pg.Client) => Promise<void> = async () => {},
  ) {}

  async get(): Promise<pg.Client> {
    if (this.closed) throw new Error('the connection is closed');
    if (this.client) return this.client;
    this.opening ??= this.open().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  /** Forgets `client` (it failed): the next `get()` reconnects. */
  drop(client: pg.Client): void {
    if (this.client === client) this.client = undefined;
    client.end().catch(() => {});
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async open(): Promise<pg.Client> {
    // keepAlive: a server that vanishes without a FIN (a partition) is noticed, and its lock let go here too.
    const client = new pg.Client({ connectionString: this.url, keepAlive: true });
    client.on('error', () => this.drop(client));
    client.on('end', () => {
      if (this.client === client) this.client = undefined;
    });
    try {
      await client.connect();
      await this.onOpen(client);
    } catch (err) {
      this.drop(client);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      throw new Error('the connection is closed');
    }
    this.client = client;
    return client;
  }
}
