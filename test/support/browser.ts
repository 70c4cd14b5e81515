/**
 * A real browser for the dashboard's end-to-end tests: Debian's chromium, driven by playwright-core
 * (which downloads no browser of its own). `.ci/run` installs chromium; elsewhere the tests that need
 * it are skipped, saying so.
 */
import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';
import { requirement } from './requirements.js';

export const CHROMIUM_BIN = '/usr/bin/chromium';

export const chromiumBrowser = requirement(
  'chromium',
  existsSync(CHROMIUM_BIN)
    ? { available: true }
    : { available: false, reason: `${CHROMIUM_BIN} not found (apt-get install chromium)` },
);

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_BIN,
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
}

/**
 * Everything that went wrong inside `page`: uncaught exceptions, console errors (a CSP violation is
 * one) and failed requests. A test asserts it stays empty.
 */
export function pageProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()} (${message.location().url})`);
  });
  page.on('requestfailed', (request) => {
    // A read the page cancels itself is aborted on purpose: leaving a rollout's page closes its event
    // stream and aborts a status poll still in flight (its AbortController). Chromium reports only
    // such cancels as ERR_ABORTED; a server that fails or hangs up shows as another error and counts.
    if (request.failure()?.errorText === 'net::ERR_ABORTED' && request.method() === 'GET') return;
    problems.push(`request failed: ${request.url()} ${request.failure()?.errorText}`);
  });
  return problems;
}
