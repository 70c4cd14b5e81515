// The API as the dashboard calls it: the same /v1 routes as the CLI, with the bearer token the user
// typed in. The token is kept in sessionStorage (this tab only, gone when it closes) and sent as an
// Authorization header: never in a URL, a cookie or local storage.

const TOKEN_KEY = 'fleetpatch.token';

/** Dispatched on `window` when the coordinator no longer knows the kept token. */
export const LOGGED_OUT = 'fleetpatch:logged-out';

export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An API error: its HTTP status and the server's `{ error: { code, message } }`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls `path` (under the page's origin) with the saved token; resolves with the parsed JSON answer. */
export async function api(path, { method = 'GET', body, token = savedToken(), signal } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: 'omit',
    cache: 'no-store',
  });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (res.status === 401 && token !== null && token === savedToken()) {
    // The kept token stopped working (removed from the coordinator's config): back to the login form.
    forgetToken();
    dispatchEvent(new Event(LOGGED_OUT));
  }
  if (!res.ok) {
    const error = parsed?.error;
    throw new ApiError(res.status, error?.code ?? 'http_error', error?.message ?? `HTTP ${res.status}`);
  }
  return parsed;
}

/** A path segment from a server value (an id), never able to change the path's shape. */
export function seg(value) {
  return encodeURIComponent(String(value));
}
