/**
 * Verify a backup set: restore it into scratch copies — scratch databases, a scratch Redis, a
 * scratch bucket — compare each with the manifest, record the verdict on the set's manifest.
 * The cleanup phase always removes the scratch copies, also on failure or cancellation.
 */
import {
  ActivityCancellationType,
  isCancellation,
  proxyActivities,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Verification } from '../domain/manifests';
import type { StoreName } from '../domain/stores';
import { ErrorType, fail } from '../domain/errors';
import { long, quick } from './options';
import { verifyBackupSetInput } from './backupRun';
import { parseInput } from './engine/input';
import { failureTypeOf, Procedure, rootMessage } from './engine/progress';
import { recordReport } from './reporting';

// On cancellation, wait until each verification has stopped (it drops what it made) before the
// cleanup phase runs, so nothing is created behind the cleanup's back.
const { verifyPostgresBackup, verifyRedisBackup, verifyObjectBackup } = proxyActivities<Activities>({
  ...long,
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});
const {
  listBackupSets,
  recordVerification,
  cleanupPostgresVerification,
  cleanupRedisVerification,
  cleanupObjectVerification,
} = proxyActivities<Activities>(quick);

export interface VerifyBackupSetInput {
  /** The set to verify; the newest set by default. */
  backupId?: string;
  /** The store holding the copy to verify (primary by default); the verdict is recorded there. */
  from?: StoreName;
}

export interface VerifyBackupSetResult extends Verification {
  backupId: string;
}

const STEPS = [
  'choose set',
  'verify postgres, redis and objects',
  'record verdict',
  'remove scratch copies',
] as const;

export async function verifyBackupSet(rawInput?: VerifyBackupSetInput): Promise<VerifyBackupSetResult> {
  const procedure = new Procedure('Verify backup set', STEPS);
  const input = parseInput(verifyBackupSetInput, rawInput, 'verifyBackupSet');
  const info = workflowInfo();
  const verifyId = `${info.workflowId}/${info.runId}`;
  const startedAt = new Date(Date.now()).toISOString();
  const reported = (outcome: 'completed' | 'failed' | 'cancelled', error?: unknown) => {
    const type = error ? failureTypeOf(error) : undefined;
    return recordReport(
      {
        kind: 'verification',
        procedure: 'verify',
        title: 'Verify backup set',
        outcome,
        startedAt,
        steps: procedure.progress.steps,
        approvals: [],
        warnings: procedure.progress.warnings,
        liveData: 'untouched: a verification restores into scratch copies only',
        ...(error ? { error: { ...(type ? { type } : {}), message: rootMessage(error) } } : {}),
      },
      (w) => procedure.warn(w),
    );
  };
  try {
    const result = await verifySteps(procedure, input, verifyId);
    await reported('completed');
    return result;
  } catch (err) {
    await reported(isCancellation(err) ? 'cancelled' : 'failed', err);
    throw err;
  }
}

async function verifySteps(
  procedure: Procedure,
  input: VerifyBackupSetInput,
  verifyId: string,
): Promise<VerifyBackupSetResult> {
  return procedure.run(
    async () => {
      const backupId = await procedure.step(
        'choose set',
        'finding the backup set',
        async () => {
          const sets = await listBackupSets({ from: input.from });
          const id = input.backupId ?? sets[0]?.id;
          if (!id || !sets.some((s) => s.id === id)) {
            throw fail(
              ErrorType.BackupNotFound,
              `no backup set ${id ?? '(none at all)'}: run the nightly backup first`,
            );
          }
          return id;
        },
        (id) => id,
      );
      const checks = await procedure.step(
        'verify postgres, redis and objects',
        'restoring into scratch databases, a scratch Redis and a scratch bucket',
        () =>
          Promise.all([
            verifyPostgresBackup({ backupId, verifyId, from: input.from }),
            verifyRedisBackup({ backupId, verifyId, from: input.from }),
            verifyObjectBackup({ backupId, verifyId, from: input.from }),
          ]),
        ([pg, redis, objects]) =>
          `postgres ${pg.ok ? 'ok' : 'FAILED'}, redis ${redis.ok ? 'ok' : 'FAILED'}, objects ${objects.ok ? 'ok' : 'FAILED'}`,
      );
      // Each problem says which part failed (`backups` shows the first one).
      const parts = ['postgres', 'redis', 'objects'] as const;
      const problems = checks.flatMap((c, i) => c.problems.map((p) => `${parts[i]}: ${p}`));
      const verification: Verification = {
        verifiedAt: new Date(Date.now()).toISOString(),
        ok: problems.length === 0,
        problems,
        verifyId,
      };
      await procedure.step('record verdict', 'writing the verdict on the set manifest', () =>
        recordVerification({ backupId, verification, from: input.from }),
      );
      if (!verification.ok) {
        throw fail(
          ErrorType.VerificationFailed,
          `backup set ${backupId} failed verification: ${problems.slice(0, 5).join('; ')}`,
          verification,
        );
      }
      return { backupId, ...verification };
    },
    () =>
      procedure.step('remove scratch copies', 'removing scratch databases, Redis and bucket', () =>
        Promise.all([
          cleanupPostgresVerification({ verifyId }),
          cleanupRedisVerification({ verifyId }),
          cleanupObjectVerification({ verifyId }),
        ]),
      ),
  );
}
