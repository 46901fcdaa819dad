/** A tiny HTTP server with /healthz for the reference services: 200 when healthy, 503 with the reason. */
import * as http from 'node:http';

export function serveHealth(
  port: number,
  check: () => Promise<{ ok: boolean; detail: unknown }>,
): http.Server {
  const server = http.createServer((req, res) => {
    if (req.url !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    check()
      .catch((err: Error) => ({ ok: false, detail: err.message }))
      .then(({ ok, detail }) => {
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ ok, detail }));
      })
      .catch(() => res.destroy());
  });
  server.listen(port, '127.0.0.1');
  return server;
}

/** Exits cleanly on SIGTERM/SIGINT after `close`. */
export function onShutdown(close: () => Promise<void>): void {
  const stop = () => {
    void close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
