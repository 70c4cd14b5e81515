import { AgentsPage } from './agents-page.js';
import { api, forgetToken, LOGGED_OUT, savedToken } from './api.js';
import { CompliancePage } from './compliance-page.js';
import { LoginPage } from './login-page.js';
import { RolloutPage } from './rollout-page.js';
import { RolloutsPage } from './rollouts-page.js';
import { html, render, useEffect, useState } from './vendor/preact-htm.mjs';

// The dashboard's shell: the login gate, the navigation, and the pages by URL hash
// (#/rollouts, #/rollouts/<id>, #/agents, #/compliance?source=…&fixed=…).

function currentRoute() {
  const hash = location.hash.replace(/^#/, '') || '/rollouts';
  const [path, query = ''] = hash.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query) };
}

function Page({ route, who }) {
  const [section, id] = route.parts;
  if (section === 'rollouts' && id) return html`<${RolloutPage} id=${id} who=${who} />`;
  if (section === 'agents') return html`<${AgentsPage} />`;
  if (section === 'compliance') return html`<${CompliancePage} query=${route.query} />`;
  return html`<${RolloutsPage} />`;
}

function App() {
  const [route, setRoute] = useState(currentRoute());
  const [who, setWho] = useState(null);
  const [checking, setChecking] = useState(savedToken() !== null);

  useEffect(() => {
    const onHash = () => setRoute(currentRoute());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    const onLoggedOut = () => setWho(null);
    addEventListener(LOGGED_OUT, onLoggedOut);
    return () => removeEventListener(LOGGED_OUT, onLoggedOut);
  }, []);

  // A token kept from earlier in this tab: check it is still good before showing anything.
  useEffect(() => {
    if (!checking) return;
    api('/v1/whoami')
      .then(setWho)
      .catch(() => forgetToken())
      .finally(() => setChecking(false));
  }, [checking]);

  if (checking) return html`<p class="muted">Checking your token…</p>`;
  if (!who) return html`<${LoginPage} onLogin=${setWho} />`;
  const logout = () => {
    forgetToken();
    setWho(null);
  };
  const section = route.parts[0] ?? 'rollouts';
  const link = (name, label) => html`<a href=${`#/${name}`} class=${section === name ? 'current' : ''}>${label}</a>`;
  return html`
    <header class="top">
      <strong class="brand">fleetpatch</strong>
      <nav>${link('rollouts', 'Rollouts')} ${link('agents', 'Agents')} ${link('compliance', 'Compliance')}</nav>
      <span class="who" data-testid="who">${who.name} (${who.role})</span>
      <button type="button" class="link" onClick=${logout}>Log out</button>
    </header>
    <${Page} route=${route} who=${who} />
  `;
}

// Preact would keep the static "Loading" line beside what it renders: clear the placeholder first.
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
