/**
 * The endpoints a procedure needs, named once for the preflight check that every recovery runs
 * first: each definition lists the ones that must answer when it starts (not the ones it is
 * about to bring back — Redis in a Redis loss, Kohakku's S3 server in an object-store loss).
 * Pure module: shared by the workflows (which list them) and the preflight activity.
 */

export const ENDPOINTS = {
  postgres: 'PostgreSQL',
  redis: 'Redis',
  'kohakku-s3': "Kohakku's S3 bucket",
  /** The backup stores the recovery may read from: the one its input names, else any that answers. */
  'backup-store': 'backup store',
  /** The restart mechanism (command, compose, systemd, kubectl): its program is there. */
  'service-adapter': 'service adapter',
} as const;
export type Endpoint = keyof typeof ENDPOINTS;

/**
 * Why an endpoint failed its check: the network or TLS (`unreachable`), the credentials
 * (`auth`), or the server answered but what is named is not there (`missing`).
 */
export type ProbeCause = 'unreachable' | 'auth' | 'missing';

export interface EndpointCheck {
  endpoint: Endpoint;
  /** Where, for people: `127.0.0.1:5432 (user kohakku)`, `s3://kohakku-backups on https://…`. Never a secret. */
  address: string;
  ok: boolean;
  cause?: ProbeCause;
  /** What answered, or what went wrong, in words. */
  detail: string;
  ms: number;
}
