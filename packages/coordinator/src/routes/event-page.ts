import type { EventPage, EventRecord } from '@fleetpatch/shared';
import { z } from 'zod';

/** `?after=SEQ&limit=N`: the cursor of every paged audit-trail route. */
export const EventPageQuerySchema = z
  .object({
    after: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

/** A full page may have more behind it: `next` is the cursor to ask with, else null. */
export function toEventPage(events: EventRecord[], limit: number): EventPage {
  const last = events.at(-1);
  return { events, next: events.length === limit && last ? last.seq : null };
}
