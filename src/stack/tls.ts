/**
 * TLS for the embedded stack's backup store: a private CA generated per stack and a server
 * certificate for 127.0.0.1/localhost signed by it, with the openssl CLI (Node can parse X.509
 * certificates but not issue them). The worker trusts the CA through BACKUP_S3_CA_FILE, as a
 * deployment with a private CA would — and as pgBackRest's S3 repository, which insists on TLS,
 * will.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export interface StackTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export async function makeStackTls(dir: string): Promise<StackTls> {
  // The CA certificate is public (pgbackrest, as the database's user, reads it); the keys are not.
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const f = (name: string) => path.join(dir, name);
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca-key.pem')]);
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    f('ca-key.pem'),
    '-sha256',
    '-days',
    '30',
    '-subj',
    '/CN=kohakku-dr embedded stack CA',
    '-out',
    f('ca.pem'),
  ]);
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('server-key.pem')]);
  openssl(['req', '-new', '-key', f('server-key.pem'), '-subj', '/CN=127.0.0.1', '-out', f('server.csr')]);
  await fs.writeFile(
    f('server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
  );
  openssl([
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca-key.pem'),
    '-CAcreateserial',
    '-days',
    '30',
    '-sha256',
    '-extfile',
    f('server.ext'),
    '-out',
    f('server.pem'),
  ]);
  await fs.chmod(f('ca.pem'), 0o644);
  for (const key of ['ca-key.pem', 'server-key.pem']) await fs.chmod(f(key), 0o600);
  return { caFile: f('ca.pem'), certFile: f('server.pem'), keyFile: f('server-key.pem') };
}
