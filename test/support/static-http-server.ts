/**
 * Serves the files of one directory over plain HTTP on 127.0.0.1 (an ephemeral port): an apt
 * repository as a real server reaches one. GET and HEAD of a plain file name in it only
 * (after normalizing the path); anything else is a 404.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, posix } from 'node:path';

export interface StaticHttpServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Paths requested so far, oldest first (`/Packages`, `/fptest_1.1_all.deb`, …). */
  requests: string[];
  close(): Promise<void>;
}

export async function serveDirectory(dir: string): Promise<StaticHttpServer> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    // apt asks for `/./Packages` of a flat repository: normalized, that is `/Packages`.
    let path: string;
    try {
      path = posix.normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/'));
    } catch {
      path = '/';
    }
    requests.push(path);
    const name = path.slice(1);
    const notFound = () => res.writeHead(404).end();
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !/^[\w.+~%-]+$/.test(name) || name.startsWith('.')) {
      notFound();
      return;
    }
    const file = join(dir, name);
    stat(file).then(
      (info) => {
        if (!info.isFile()) return notFound();
        res.writeHead(200, { 'content-length': info.size, 'content-type': 'application/octet-stream' });
        if (req.method === 'HEAD') return res.end();
        createReadStream(file).pipe(res);
      },
      () => notFound(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
