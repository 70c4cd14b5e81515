import { savedToken } from './api.js';

// A rollout's Server-Sent Events, read with fetch because EventSource cannot send an Authorization
// header. Reconnects with Last-Event-ID after a dropped connection (a coordinator restart), so no
// event is missed or repeated.

const RECONNECT_MS = 2000;

/** Parses one SSE block (`id:`, `event:`, `data:` lines); null for a comment-only keep-alive. */
function parseBlock(block) {
  let id = null;
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('id:')) id = line.slice(3).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (data.length === 0) return null;
  return { id, data: data.join('\n') };
}

/**
 * Calls `onEvent(event)` for every audit event of rollout `rolloutId`, oldest first, from the start,
 * `onProgress()` when a host reports a new phase or (`hostEvents: 'coalesced'`) hosts moved (live only; not audit events),
 * and `onStatus('live' | 'reconnecting' | message)` as the connection changes, until `signal` aborts.
 */
export async function followRolloutEvents(rolloutId, { onEvent, onProgress, onStatus, signal, hostEvents = 'all' }) {
  // `coalesced`: no host event, an id-less `hosts.changed` now and then instead (onProgress).
  const query = hostEvents === 'all' ? '' : `?hostEvents=${hostEvents}`;
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = { accept: 'text/event-stream', authorization: `Bearer ${savedToken() ?? ''}` };
      if (lastId !== null) headers['last-event-id'] = lastId;
      const res = await fetch(`/v1/rollouts/${encodeURIComponent(rolloutId)}/events/stream${query}`, {
        headers,
        signal,
        credentials: 'omit',
        cache: 'no-store',
      });
      if (!res.ok || !res.body) {
        onStatus(`event stream refused: HTTP ${res.status}`);
        if (res.status === 401 || res.status === 403 || res.status === 404) return;
      } else {
        onStatus('live');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end = buffer.indexOf('\n\n');
          while (end >= 0) {
            const parsed = parseBlock(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            // No id: a host's live phase (host.progress), not an audit event; the status shows it.
            if (parsed?.id === null) onProgress?.();
            else if (parsed) {
              lastId = parsed.id;
              onEvent(JSON.parse(parsed.data));
            }
            end = buffer.indexOf('\n\n');
          }
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      onStatus(`event stream lost: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (signal.aborted) return;
    onStatus('reconnecting');
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, RECONNECT_MS);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
