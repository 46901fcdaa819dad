/**
 * Signed evidence: reports (src/domain/reports.ts) signed with an ed25519 key (node:crypto — the
 * runtime's own OpenSSL, no extra dependency), checked by `kohakku-dr evidence verify` against
 * the public key. The private key stays in its file (EVIDENCE_SIGNING_KEY_FILE, PKCS#8 PEM); only
 * its key id travels with a report.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { signedBytes, type Report, type ReportSignature } from '../domain/reports';

/** The first 16 hex digits of the sha256 of a public key's SPKI DER. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/** An ed25519 key from a PEM file, by `parse`; a clear error naming the file otherwise. */
async function readEd25519(
  file: string,
  parse: (pem: Buffer) => KeyObject,
  what: string,
): Promise<KeyObject> {
  let key: KeyObject;
  try {
    key = parse(await fs.readFile(file));
  } catch (err) {
    throw new Error(`${file}: not a readable ${what} (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`${file}: an ${key.asymmetricKeyType} key, expected ed25519`);
  return key;
}

/** An ed25519 private key (PKCS#8 PEM): EVIDENCE_SIGNING_KEY_FILE. */
export const readSigningKey = (file: string) => readEd25519(file, createPrivateKey, 'private key');

/** An ed25519 public key (SPKI PEM): what `evidence verify` checks against. */
export const readPublicKey = (file: string) => readEd25519(file, createPublicKey, 'public key');

/** The report with its signature. */
export function signReport(report: Report, privateKey: KeyObject): Report {
  const signature: ReportSignature = {
    algorithm: 'ed25519',
    keyId: keyIdOf(createPublicKey(privateKey)),
    value: sign(null, Buffer.from(signedBytes(report)), privateKey).toString('base64'),
  };
  return { ...report, signature };
}

export type Verdict = { ok: true; keyId: string } | { ok: false; reason: string };

/** Whether `report` carries a valid signature by `publicKey` over exactly what it says. */
export function verifyReport(report: Report, publicKey: KeyObject): Verdict {
  const s = report.signature;
  if (!s) return { ok: false, reason: 'the report is not signed' };
  if (s.algorithm !== 'ed25519')
    return { ok: false, reason: `unknown signature algorithm ${String(s.algorithm)}` };
  const keyId = keyIdOf(publicKey);
  if (s.keyId !== keyId)
    return { ok: false, reason: `signed by key ${s.keyId}, not by the given key ${keyId}` };
  const good = verify(null, Buffer.from(signedBytes(report)), publicKey, Buffer.from(s.value, 'base64'));
  return good
    ? { ok: true, keyId }
    : {
        ok: false,
        reason: 'the signature does not match the content: the report was changed after it was signed',
      };
}

/** A new key pair in `dir`: `<name>.key` (private, mode 0600) and `<name>.pub`; returns their paths and id. */
export async function generateSigningKey(dir: string, name = 'kohakku-dr-evidence') {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await fs.mkdir(dir, { recursive: true });
  const keyFile = path.join(dir, `${name}.key`);
  const publicKeyFile = path.join(dir, `${name}.pub`);
  await fs.writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
    flag: 'wx',
  });
  await fs.writeFile(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }), { flag: 'wx' });
  return { keyFile, publicKeyFile, keyId: keyIdOf(publicKey) };
}
