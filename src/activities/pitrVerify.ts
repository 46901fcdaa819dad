/**
 * The recovery window proven: the newest base backup plus the whole WAL archive restored into a
 * scratch directory, started on a scratch port with archiving off, replayed and promoted, both
 * databases checked, the verdict recorded (the newest, and the base backup's own, which retention
 * and `latest`-style choices read) — and the scratch server and directory always removed.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ErrorType, fail } from '../domain/errors';
import { PITR_VERIFICATION_KEY } from '../domain/pitr';
import { withDatabase } from '../infra/database';
import { shortTag } from '../infra/hashing';
import { freePort } from '../infra/processes';
import { typedPgbackrestFailure } from '../infra/pgbackrest';
import { cancellationSignal, sleep, withHeartbeats } from './heartbeat';
import { lastCommitTime, userTableCount, type PitrKit } from './pitrKit';
import { pathExists } from '../infra/files';

export interface PitrVerification {
  skipped?: string;
  ok: boolean;
  problems: string[];
  verifiedAt: string;
  baseBackup?: string;
  /** The last commit the scratch recovery replayed to: how recent the proven point is. */
  reachedLastCommit?: string;
  seconds?: number;
}

export function createPitrVerifyActivities(kit: PitrKit) {
  const { config, exec, store, tool, runningPostmaster, writeVerdicts } = kit;
  /**
   * The recovery window proven, as the nightly verification does for the logical backups: the
   * newest base backup plus every archived WAL segment restored into a scratch directory, started
   * on a scratch port with archiving off, replayed to the end of the archive and promoted; both
   * databases must connect and have their tables. The scratch server and directory are always
   * removed; the verdict is recorded in the backup store (`pitr/verification.json`).
   */
  async function verifyRecoveryWindow(input: { verifyId: string }): Promise<PitrVerification> {
    if (!config.pitr)
      return { skipped: 'PITR=off', ok: true, problems: [], verifiedAt: new Date().toISOString() };
    const pitr = config.pitr;
    const pg = tool();
    const skipped = (why: string): PitrVerification => ({
      skipped: why,
      ok: true,
      problems: [],
      verifiedAt: new Date().toISOString(),
    });
    if (!(await pathExists(pitr.configFile)))
      return skipped(`not set up yet: no ${pitr.configFile} (run \`kohakku-dr pitr setup\`)`);
    const info = await pg.info();
    const newest = info.backup.filter((b) => !b.error).pop();
    if (!newest)
      return skipped(`no base backup in stanza ${pitr.stanza} yet (run \`kohakku-dr pitr backup\`)`);
    const scratch = path.join(pitr.workDir, `verify-${shortTag(input.verifyId)}`);
    const pgCtl = config.postgres.binDir ? path.join(config.postgres.binDir, 'pg_ctl') : 'pg_ctl';
    const owner = await fs.stat(pitr.configFile);
    const asOwner = process.getuid?.() === 0 && owner.uid !== 0 ? { uid: owner.uid, gid: owner.gid } : {};
    const problems: string[] = [];
    let lastCommit: string | undefined;
    const started = Date.now();
    await removeScratch(scratch, pgCtl, asOwner);
    try {
      await fs.mkdir(scratch, { mode: 0o700 });
      await fs.chown(scratch, owner.uid, owner.gid);
      await withHeartbeats(
        () => ({ verifying: newest.label, phase: 'restore into a scratch directory' }),
        () =>
          pg.run(
            [
              `--pg1-path=${scratch}`,
              `--set=${newest.label}`,
              '--type=default',
              '--archive-mode=off',
              'restore',
            ],
            {
              signal: cancellationSignal(),
            },
          ),
      ).catch((err: unknown) => {
        throw typedPgbackrestFailure(err, 'verifying the recovery window: pgbackrest restore');
      });
      const port = await freePort();
      await exec(
        pgCtl,
        [
          'start',
          '-W',
          '-D',
          scratch,
          '-l',
          path.join(scratch, 'kohakku-dr-verify.log'),
          '-o',
          // hot_standby off: no connections until promoted, and none of the standby checks of
          // settings (max_connections…) against the live server's.
          `-p ${port} -k ${scratch} -c listen_addresses='' -c archive_mode=off -c hot_standby=off`,
        ],
        { ...asOwner, isolatedEnv: true, env: { PATH: process.env.PATH } },
      );
      const scratchConfig = { ...config, postgres: { ...config.postgres, host: scratch, port } };
      await withHeartbeats(
        () => ({ verifying: newest.label, phase: 'replaying WAL in the scratch server' }),
        async () => {
          for (const deadline = Date.now() + 30 * 60000; ;) {
            const promoted = await withDatabase(
              scratchConfig,
              config.postgres.maintenanceDb,
              async (c) =>
                (await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r === false,
            ).catch(() => false);
            if (promoted) return;
            if (Date.now() > deadline)
              throw new Error('the scratch server did not finish recovery within 30 minutes');
            await sleep(500, cancellationSignal());
          }
        },
      );
      for (const database of Object.values(config.postgres.databases)) {
        const tables = await userTableCount(scratchConfig, database).catch((err: Error) => {
          problems.push(`${database}: ${err.message}`);
          return -1;
        });
        if (tables === 0) problems.push(`${database}: no tables`);
      }
      lastCommit = await lastCommitTime(scratchConfig).catch(() => undefined);
    } finally {
      await removeScratch(scratch, pgCtl, asOwner);
    }
    const verdict: PitrVerification = {
      ok: problems.length === 0,
      problems,
      verifiedAt: new Date().toISOString(),
      baseBackup: newest.label,
      reachedLastCommit: lastCommit,
      seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    await store.ensureReady();
    await store.putJson(PITR_VERIFICATION_KEY, verdict);
    await writeVerdicts({
      set: [
        newest.label,
        { ok: verdict.ok, verifiedAt: verdict.verifiedAt, reachedLastCommit: lastCommit, problems },
      ],
    });
    if (!verdict.ok)
      throw fail(
        ErrorType.VerificationFailed,
        `the recovery window did not verify: ${problems.join('; ')}`,
        verdict,
      );
    return verdict;
  }

  /** Stops a scratch server (immediate) and removes its directory; nothing if neither is there. */
  async function removeScratch(scratch: string, pgCtl: string, asOwner: { uid?: number; gid?: number }) {
    if (await runningPostmaster(scratch))
      await exec(pgCtl, ['stop', '-m', 'immediate', '-w', '-D', scratch], {
        ...asOwner,
        isolatedEnv: true,
        env: { PATH: process.env.PATH },
      }).catch(() => undefined);
    await fs.rm(scratch, { recursive: true, force: true });
  }

  return { verifyRecoveryWindow };
}
