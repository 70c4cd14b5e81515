import { api, saveToken } from './api.js';
import { html, useState } from './vendor/preact-htm.mjs';

/** Asks for an API token, checks it with GET /v1/whoami, and keeps it for this tab only. */
export function LoginPage({ onLogin }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const token = new FormData(event.currentTarget).get('token')?.toString().trim() ?? '';
    if (!token) {
      setError('Enter an API token.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const who = await api('/v1/whoami', { token });
      saveToken(token);
      onLogin(who);
    } catch (err) {
      setError(err.status === 401 ? 'That token is not known to this coordinator.' : err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`
    <form class="login" onSubmit=${submit}>
      <h1>fleetpatch</h1>
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" autofocus />
      <p class="muted">
        Any token from the coordinator's <code>apiTokens</code>; a viewer's can only look. It is kept in this tab until
        you log out or close it.
      </p>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy}>Log in</button>
    </form>
  `;
}
