/**
 * A TLS proxy in front of the stack's backup store that can answer every request with
 * `503 SlowDown` for a while, as an S3 service under load does — the fault matrix's "S3 answering
 * 503" (crashMatrix.test.ts). It serves the stack's own certificate (localhost, signed by the
 * stack's CA, which the worker already trusts) and passes requests through unchanged, Host header
 * included, so the worker's signatures stay valid upstream.
 */
import { readFileSync } from 'node:fs';
import { request as httpsRequest, createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { StackInfo } from '../../src/stack/stack';

export interface FaultyS3 {
  /** The endpoint to give the worker (BACKUP_S3_ENDPOINT). */
  endpoint: string;
  /** While true, every request gets 503 SlowDown. */
  failing: boolean;
  /** Requests answered 503 so far. */
  refused: number;
  close(): Promise<void>;
}

const SLOW_DOWN =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';

export async function startFaultyS3(stack: StackInfo): Promise<FaultyS3> {
  const tlsDir = path.join(stack.dir, 'tls');
  const ca = readFileSync(stack.backupS3.caFile!);
  const state = { failing: false, refused: 0 };
  const server: Server = createServer(
    {
      cert: readFileSync(path.join(tlsDir, 'server.pem')),
      key: readFileSync(path.join(tlsDir, 'server-key.pem')),
    },
    (req, res) => {
      if (state.failing) {
        state.refused += 1;
        req.resume();
        res.writeHead(503, { 'Content-Type': 'application/xml', 'Retry-After': '1' }).end(SLOW_DOWN);
        return;
      }
      const upstream = httpsRequest(
        {
          host: '127.0.0.1',
          port: stack.backupS3.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          ca,
          servername: 'localhost',
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `https://localhost:${port}`,
    get failing() {
      return state.failing;
    },
    set failing(value: boolean) {
      state.failing = value;
    },
    get refused() {
      return state.refused;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
