import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

export interface MetricAnswerServer {
  /** `http://127.0.0.1:<port>`, the analysis address to query. */
  origin: string;
  /** Resolves when the client closes a connection before its answer was written to the end. */
  hungUp: Promise<void>;
}

/**
 * An HTTP server on 127.0.0.1 that answers every request through `answer`, closed when the test
 * finishes. For what a metric server can send: an answer of any size, at any pace.
 */
export async function serveMetricAnswer(answer: (res: ServerResponse) => void): Promise<MetricAnswerServer> {
  let hangUp: () => void = () => undefined;
  const hungUp = new Promise<void>((resolve) => {
    hangUp = resolve;
  });
  const server = createServer((_req, res) => {
    res.on('close', () => {
      if (!res.writableFinished) hangUp();
    });
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hungUp };
}
