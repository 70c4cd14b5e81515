import { createHash } from 'node:crypto';

/**
 * The label an endpoint without a name goes by in logs and on the audit trail: its origin and the
 * first 8 hex digits of its URL's sha256. Written out here, not imported, so that a test holds the
 * notifier to it.
 */
export function hashedWebhookLabel(url: string): string {
  return `${new URL(url).origin}#${createHash('sha256').update(url).digest('hex').slice(0, 8)}`;
}
