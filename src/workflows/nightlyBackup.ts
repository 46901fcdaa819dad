/**
 * The nightly backup (started by the Temporal Schedule): Postgres, Redis and the object store
 * backed up side by side under one backup id, one manifest for the set, then verify it, copy it
 * to the replica store (when there is one) and check the copy, then prune sets past retention in
 * both stores. A failure fails the run, so a paused-on-failure schedule shows it.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { executeChild, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import { ErrorType } from '../domain/errors';
import type { Activities } from '../activities';
import type { PruneReport } from '../activities/backupSets';
import type { PitrVerification } from '../activities/pitr';
import type { ReplicaReport } from '../activities/replica';
import type { BackupSetManifest } from '../domain/manifests';
import { objectStoreBackup } from './objectStoreBackup';
import { long, quick, scan } from './options';
import { postgresBackup } from './postgresBackup';
import { backupIdOfThisRun, noInput } from './backupRun';
import { parseInput } from './engine/input';
import { failureTypeOf, Procedure, rootMessage } from './engine/progress';
import { notifyBeside } from './notify';
import { redisBackup } from './redisBackup';
import { verifyBackupSet, type VerifyBackupSetResult } from './verifyBackupSet';

const { writeBackupSet } = proxyActivities<Activities>(quick);
const { pruneBackups } = proxyActivities<Activities>(scan);
const { replicateBackupSet, verifyRecoveryWindow } = proxyActivities<Activities>(long);

export interface NightlyBackupResult {
  set: BackupSetManifest;
  verification: VerifyBackupSetResult;
  retention: PruneReport;
  /** The copy in the replica store (absent in runs from before 0.3; `skipped` when none is configured). */
  replica?: ReplicaReport;
  /** Retention in the replica store, when there is one. */
  replicaRetention?: PruneReport;
  /** With PITR: the scratch recovery of the newest base backup and the WAL archive. */
  recoveryWindow?: PitrVerification;
}

const STEPS = [
  'back up postgres, redis and objects',
  'write set manifest',
  'verify',
  'verify the recovery window',
  'copy to the replica',
  'prune past retention',
  'prune the replica',
] as const;

/** Runs started before 0.3.6 replay without the failure notification. */
export const NOTIFY_PATCH = 'kohakku-dr-notify';

/** The schedule that started this run, if one did (the server's TemporalScheduledById). */
const scheduledBy = () =>
  workflowInfo().typedSearchAttributes.get(
    defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD),
  );

export async function nightlyBackup(rawInput?: Record<string, never>): Promise<NightlyBackupResult> {
  const procedure = new Procedure('Nightly backup', STEPS);
  parseInput(noInput, rawInput, 'nightlyBackup');
  const backupId = backupIdOfThisRun();
  try {
    return await backUpVerifyCopyPrune(procedure, backupId);
  } catch (err) {
    if (patched(NOTIFY_PATCH)) {
      const verification = failureTypeOf(err) === ErrorType.VerificationFailed;
      const schedule = scheduledBy();
      const warning = await notifyBeside({
        event: verification ? 'verification-failed' : 'backup-failed',
        title: verification
          ? `nightly backup set ${backupId} failed verification`
          : `nightly backup ${backupId} failed`,
        lines: [
          rootMessage(err),
          verification
            ? 'The set is kept but never chosen as "latest"; recoveries use the newest verified set. `kohakku-dr backups` shows the problem.'
            : 'No new set: recoveries use the newest verified one. `kohakku-dr backups` lists what there is.',
        ],
        ...(schedule ? { schedule } : {}),
      });
      if (warning) procedure.warn(warning);
    }
    throw err;
  }
}

async function backUpVerifyCopyPrune(procedure: Procedure, backupId: string): Promise<NightlyBackupResult> {
  const startedAt = workflowInfo().runStartTime.toISOString();
  const child = (name: string) => `${workflowInfo().workflowId}/${name}`;
  return procedure.run(async () => {
    await procedure.step('back up postgres, redis and objects', `backups into set ${backupId}`, () =>
      Promise.all([
        executeChild(postgresBackup, { workflowId: child('postgres'), args: [{ backupId }] }),
        executeChild(redisBackup, { workflowId: child('redis'), args: [{ backupId }] }),
        executeChild(objectStoreBackup, { workflowId: child('objects'), args: [{ backupId }] }),
      ]),
    );
    const set = await procedure.step('write set manifest', 'writing the set manifest', () =>
      writeBackupSet({ backupId, startedAt }),
    );
    const verification = await procedure.step(
      'verify',
      'restoring the set into scratch copies',
      () => executeChild(verifyBackupSet, { workflowId: child('verify'), args: [{ backupId }] }),
      (v) => (v.ok ? 'verified' : 'FAILED'),
    );
    // 0.3: with PITR, the newest base backup and the WAL archive are proven restorable too.
    let recoveryWindow: PitrVerification | undefined;
    if (patched('pitr-window-verify')) {
      recoveryWindow = await procedure.step(
        'verify the recovery window',
        'restoring the newest base backup and the archived WAL into a scratch server',
        () => verifyRecoveryWindow({ verifyId: `${workflowInfo().workflowId}/${workflowInfo().runId}` }),
        (v) =>
          v.skipped ??
          `base backup ${v.baseBackup} + WAL replayed to ${v.reachedLastCommit ?? 'the end'} in ${v.seconds} s`,
      );
    } else procedure.skip('verify the recovery window', 'this run started before kohakku-dr 0.3');
    // 0.3: the verified set is copied off to the replica store (3-2-1), which retention prunes too.
    let replica: ReplicaReport | undefined;
    if (patched('replica-copy')) {
      replica = await procedure.step(
        'copy to the replica',
        'copying the verified set to the replica store and checking the copy',
        () => replicateBackupSet({ backupId }),
        (r) =>
          r.skipped ??
          `${r.copied} copied (${r.bytesCopied} B; ${r.blobsCopied} new blobs, ${r.blobsAlreadyPresent} already there), ${r.alreadyPresent} in all already there; checked ${r.checked.dumps} dumps, ${r.checked.rdb} RDB, ${r.checked.blobsHashed} blobs by hash, ${r.checked.blobsSized} by size`,
      );
    } else procedure.skip('copy to the replica', 'this run started before kohakku-dr 0.3');
    const retention = await procedure.step(
      'prune past retention',
      'pruning backup sets past retention',
      () => pruneBackups({ asOf: new Date(Date.now()).toISOString() }),
      (r) => `pruned ${r.pruned.length}, kept ${r.kept.length}, ${r.blobsRemoved} unreferenced blobs removed`,
    );
    let replicaRetention: PruneReport | undefined;
    if (replica && !replica.skipped) {
      replicaRetention = await procedure.step(
        'prune the replica',
        'pruning backup sets past retention in the replica store',
        () => pruneBackups({ asOf: new Date(Date.now()).toISOString(), from: 'replica' }),
        (r) =>
          `pruned ${r.pruned.length}, kept ${r.kept.length}, ${r.blobsRemoved} unreferenced blobs removed`,
      );
    } else procedure.skip('prune the replica', replica?.skipped ?? 'no copy was made');
    return {
      set,
      verification,
      retention,
      ...(recoveryWindow ? { recoveryWindow } : {}),
      ...(replica ? { replica } : {}),
      ...(replicaRetention ? { replicaRetention } : {}),
    };
  });
}
