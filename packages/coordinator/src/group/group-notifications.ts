import type { Logger } from 'pino';
import type { PostgresExecutor } from '../store/postgres/postgres-executor.js';
import { DedicatedConnection } from './dedicated-connection.js';
import type { NotifyChannelName } from './notify-channels.js';

const RECONNECT_MS = [100, 250, 500, 1000, 2000];

/**
 * LISTENs on the group's channels on a session of its own and hands each notification to its
 * handler. NOTIFY is neither stored nor replayed: while the session is down notifications are lost,
 * so after every reconnect `onReconnect` runs — each reader catches up from the rows — and every
 * reader also polls on its own timer.
 */
export class GroupNotifications {
  private readonly connection: DedicatedConnection;
  private attempt = 0;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    url: string,
    private readonly executor: PostgresExecutor,
    private readonly handlers: Record<NotifyChannelName, (payload: string) => void>,
    private readonly onReconnect: () => void,
    private readonly log: Logger,
  ) {
    this.connection = new DedicatedConnection(url, async (client) => {
      client.on('notification', (message) => {
        const handler = this.handlers[message.channel as NotifyChannelName];
        handler?.(message.payload ?? '');
      });
      client.on('error', () => this.reconnectSoon());
      client.on('end', () => this.reconnectSoon());
      for (const channel of Object.keys(this.handlers)) await client.query(`LISTEN ${channel}`);
    });
  }

  async start(): Promise<void> {
    await this.connection.get();
  }

  /** Sends a wake-up to every coordinator of the group (this one included). */
  async notify(channel: NotifyChannelName, payload = ''): Promise<void> {
    await this.executor.query('SELECT pg_notify($1, $2)', [channel, payload]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.connection.close();
  }

  private reconnectSoon(): void {
    if (this.stopped || this.timer) return;
    const delay = RECONNECT_MS[Math.min(this.attempt, RECONNECT_MS.length - 1)] ?? 2000;
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.connection.get().then(
        () => {
          this.attempt = 0;
          this.log.info('listening to the coordinator group again');
          this.onReconnect();
        },
        (err: unknown) => {
          this.log.warn({ err }, 'cannot listen to the coordinator group yet; retrying');
          this.reconnectSoon();
        },
      );
    }, delay);
    this.timer.unref();
  }
}
