/**
 * Error types raised as ApplicationFailure. Workflows list the non-retryable ones in their
 * retry policies; operators see the type and a message that says what to do.
 * Pure module: imported by workflows and activities alike.
 */
import { ApplicationFailure } from '@temporalio/common';

export const ErrorType = {
  /** The input names something that does not exist or is malformed. */
  InvalidInput: 'InvalidInput',
  /** No backup set matches the request. */
  BackupNotFound: 'BackupNotFound',
  /** A dump's sha256 or size differs from its manifest, or pg_restore cannot read it. */
  BackupCorrupt: 'BackupCorrupt',
  /**
   * The backup cannot be restored here: it was made by a newer PostgreSQL major (server or
   * pg_dump) than the live server or this worker's pg_restore. Found before anything is fetched.
   */
  BackupIncompatible: 'BackupIncompatible',
  /** The restored staging copy does not match the manifest's row counts or checksums. */
  RestoreVerificationFailed: 'RestoreVerificationFailed',
  /** A service stayed unhealthy after the configured restart. */
  ServiceUnhealthy: 'ServiceUnhealthy',
  /** The Monitor did not register every active container, even after a restart. */
  RegistrationIncomplete: 'RegistrationIncomplete',
  /** A backup set did not restore to what its manifest says (the verdict is on the manifest). */
  VerificationFailed: 'VerificationFailed',
  /** An external tool is missing or too old for the server. */
  ToolUnavailable: 'ToolUnavailable',
  /**
   * A live database cannot be swapped safely: prepared transactions, sessions that cannot be
   * ended, missing privileges. Detected before anything live is changed; the message names them.
   */
  SwapBlocked: 'SwapBlocked',
  /** What is live now differs from what was approved for replacement; nothing was changed. */
  LiveDataChanged: 'LiveDataChanged',
  /**
   * Live rows in other tables reference rows the backup of a restored table does not have
   * (newer than the backup); refused before anything changed, with the counts.
   */
  NewerReferencingRows: 'NewerReferencingRows',
  /** Another recovery holds this target (its workflow id is in the message). */
  AlreadyRunning: 'AlreadyRunning',
  /** A point-in-time target outside the recoverable window (earliest base backup … newest WAL). */
  TargetOutsideWindow: 'TargetOutsideWindow',
  /**
   * PostgreSQL replayed every WAL record it could read and ended its recovery without reaching
   * the point-in-time target (no transaction after it in that WAL).
   */
  RecoveryTargetNotReached: 'RecoveryTargetNotReached',
  /** The preflight check could not reach an endpoint (refused, timed out, DNS, TLS): named with its address. */
  EndpointUnreachable: 'EndpointUnreachable',
  /** An endpoint refused the configured credentials (wrong password, access key or secret). */
  EndpointAuthFailed: 'EndpointAuthFailed',
  /** An endpoint answered, but what the settings name there (bucket, directory, program) is not there. */
  EndpointMissing: 'EndpointMissing',
  /**
   * The worker's work directory cannot hold what must be downloaded (checked before the
   * download, and a disk that fills up during one): named with the directory and the sizes.
   */
  NoSpace: 'NoSpace',
  /** The notification webhook refused a delivery (a 4xx: revoked or mistyped); not retried. */
  NotificationRejected: 'NotificationRejected',
} as const;
export type ErrorTypeName = (typeof ErrorType)[keyof typeof ErrorType];

/** Raised before anything live is touched; retrying cannot help, the operator must act. */
export const NON_RETRYABLE_ERRORS: ErrorTypeName[] = [
  ErrorType.InvalidInput,
  ErrorType.BackupNotFound,
  ErrorType.BackupCorrupt,
  ErrorType.BackupIncompatible,
  ErrorType.RestoreVerificationFailed,
  ErrorType.ToolUnavailable,
  ErrorType.VerificationFailed,
  ErrorType.SwapBlocked,
  ErrorType.LiveDataChanged,
  ErrorType.NewerReferencingRows,
  ErrorType.AlreadyRunning,
  ErrorType.TargetOutsideWindow,
  ErrorType.RecoveryTargetNotReached,
  ErrorType.EndpointUnreachable,
  ErrorType.EndpointAuthFailed,
  ErrorType.EndpointMissing,
  ErrorType.NoSpace,
];

export function fail(type: ErrorTypeName, message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({
    type,
    message,
    nonRetryable: true,
    details: details === undefined ? [] : [details],
  });
}
