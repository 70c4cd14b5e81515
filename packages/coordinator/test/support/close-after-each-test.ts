import { afterEach } from 'vitest';
import { closeOpenFleets } from './simulated-fleet.js';
import { closeReceivers } from './webhook-receiver.js';

// The coordinator projects' setup file (vitest.config.ts): what a test leaves open is closed after it.
// Here, not at the top of the support modules: their files share modules (`isolate: false`), so a
// module's top level runs for the first file that imports it only, and a hook registered there
// closed nothing in every later file of the worker (PostgreSQL ran out of connections for it).
// A setup file runs again before each test file.
afterEach(async () => {
  await Promise.all([closeOpenFleets(), closeReceivers()]);
});
