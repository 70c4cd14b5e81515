import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, FleetError } from '@fleetpatch/shared';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';

/**
 * The dashboard's static files, built into `dist/dashboard` by `scripts/build-dashboard.mjs` (its
 * own files and the vendored preact + htm bundle). They hold no secret: the page asks for an API
 * token and every API call it makes is checked like any other.
 */
export const DASHBOARD_DIR = fileURLToPath(new URL('../dashboard/', import.meta.url));

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
};

/**
 * Scripts and styles only from the coordinator itself, none inline (the page has none), no plugins,
 * no framing; API calls only to the same origin. With every server string rendered as text, a
 * patch title or label cannot run script here even if it gets into the page.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

interface StaticFile {
  body: Buffer;
  type: string;
}

/** Every file under `dir`, by its path relative to it with `/` separators; read once, at startup. */
function readTree(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  const walk = (current: string) => {
    for (const name of readdirSync(current)) {
      const path = join(current, name);
      if (statSync(path).isDirectory()) walk(path);
      else {
        const type = CONTENT_TYPES[extname(name)];
        if (type) files.set(relative(dir, path).split(sep).join('/'), { body: readFileSync(path), type });
      }
    }
  };
  walk(dir);
  return files;
}

function send(reply: FastifyReply, file: StaticFile): FastifyReply {
  return reply
    .header('content-type', file.type)
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-cache')
    .send(file.body);
}

/**
 * `/ui/`: the dashboard. Files are served from memory by exact name, so no request path ever reaches
 * the file system. A coordinator built without the dashboard (tsc alone) still runs; `/ui/` then
 * says how to build it.
 */
export const dashboardRoutes: FastifyPluginAsync<{ dir?: string }> = async (app, { dir = DASHBOARD_DIR }) => {
  let files = new Map<string, StaticFile>();
  try {
    files = readTree(dir);
  } catch (err) {
    app.log.warn({ err, dir }, 'dashboard not built (npm run build); /ui/ is unavailable');
  }
  const notBuilt = () =>
    new FleetError(ErrorCode.notFound, 'the dashboard is not built into this coordinator: run npm run build');

  app.get('/ui', { config: { access: 'public' }, schema: { hide: true } }, async (_request, reply) =>
    reply.redirect('/ui/'),
  );
  app.get('/ui/', { config: { access: 'public' }, schema: { hide: true } }, async (_request, reply) => {
    const index = files.get('index.html');
    if (!index) throw notBuilt();
    return send(reply, index);
  });
  app.get<{ Params: { '*': string } }>(
    '/ui/*',
    { config: { access: 'public' }, schema: { hide: true } },
    async (request, reply) => {
      const file = files.get(request.params['*']);
      if (!file) throw new FleetError(ErrorCode.notFound, 'no such dashboard file');
      return send(reply, file);
    },
  );
};
