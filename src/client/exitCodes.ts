/**
 * What `kohakku-dr` exits with, so that a runbook's script can branch on it: one table drives
 * the classification of every failure, the text `--help` ends with and the README's table (a test
 * keeps the README matching). A failure prints one line naming what failed — no stack trace unless
 * `--debug`.
 */
import { CommanderError } from 'commander';
import { ServiceError, WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure, TerminatedFailure } from '@temporalio/common';
import { ErrorType } from '../domain/errors';

export const EXIT_CODES = [
  { code: 0, name: 'done', meaning: 'the command did what it says (a recovery or backup completed)' },
  {
    code: 1,
    name: 'failed',
    meaning: 'the workflow failed, was cancelled or terminated, or the command could not do its work',
  },
  {
    code: 2,
    name: 'bad-input',
    meaning: 'bad arguments or settings, or input the workflow refused before touching anything',
  },
  {
    code: 3,
    name: 'refused',
    meaning:
      'refused by the state of things: a run of the same recovery in progress, nothing waiting for approval',
  },
  {
    code: 4,
    name: 'awaiting-approval',
    meaning: 'the workflow waits for `kohakku-dr approve` (with --no-wait, or from `status`)',
  },
  {
    code: 5,
    name: 'unreachable',
    meaning:
      "the Temporal server (TEMPORAL_ADDRESS) cannot be reached, or a recovery's preflight found an endpoint unreachable, refusing the credentials or missing (nothing was changed)",
  },
  {
    code: 130,
    name: 'interrupted',
    meaning: 'Ctrl-C: the CLI stopped following; the workflow keeps running on the worker',
  },
] as const;
export type ExitName = (typeof EXIT_CODES)[number]['name'];

export const exitCode = (name: ExitName): number => EXIT_CODES.find((e) => e.name === name)!.code;

/** A failure the CLI itself names: its exit code and the line it prints. */
export class CliError extends Error {
  constructor(
    readonly exit: ExitName,
    message: string,
    /** Printed (as JSON) on stdout with --json, beside the error. */
    readonly document?: unknown,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Error types a workflow raises on input it refuses before anything live is touched. */
const BAD_INPUT_TYPES: string[] = [
  ErrorType.InvalidInput,
  ErrorType.BackupNotFound,
  ErrorType.BackupIncompatible,
  ErrorType.TargetOutsideWindow,
];
const REFUSED_TYPES: string[] = [ErrorType.AlreadyRunning];
/** The preflight's findings: an endpoint the recovery needs does not answer as it must. */
const UNREACHABLE_TYPES: string[] = [
  ErrorType.EndpointUnreachable,
  ErrorType.EndpointAuthFailed,
  ErrorType.EndpointMissing,
];

/** The innermost cause's message and type — the part an operator can act on — and its exit code. */
export function failureOf(err: WorkflowFailedError): { message: string; type?: string; exit: ExitName } {
  let cause: unknown = err.cause;
  while (cause instanceof Error && cause.cause instanceof ApplicationFailure) cause = cause.cause;
  if (cause instanceof CancelledFailure) return { message: 'cancelled', type: 'Cancelled', exit: 'failed' };
  if (cause instanceof TerminatedFailure)
    return { message: `terminated (${cause.message})`, type: 'Terminated', exit: 'failed' };
  if (!(cause instanceof ApplicationFailure))
    return { message: cause instanceof Error ? cause.message : err.message, exit: 'failed' };
  const type = cause.type ?? undefined;
  const exit =
    type && BAD_INPUT_TYPES.includes(type)
      ? 'bad-input'
      : type && REFUSED_TYPES.includes(type)
        ? 'refused'
        : type && UNREACHABLE_TYPES.includes(type)
          ? 'unreachable'
          : 'failed';
  return { message: cause.message, type, exit };
}

/** The exit code and one line for any error that reaches the CLI's top level. */
export function classify(err: unknown, temporalAddress: string): { exit: ExitName; message: string } {
  if (err instanceof CliError) return { exit: err.exit, message: err.message };
  if (err instanceof CommanderError) return { exit: 'bad-input', message: err.message };
  if (err instanceof Error && err.name === 'ConfigError') return { exit: 'bad-input', message: err.message };
  if (err instanceof Error && err.name === 'AlreadyRunning') return { exit: 'refused', message: err.message };
  if (err instanceof WorkflowNotFoundError) return { exit: 'bad-input', message: err.message };
  if (err instanceof WorkflowFailedError) {
    const { message, type, exit } = failureOf(err);
    return { exit, message: `the workflow failed${type ? ` (${type})` : ''}: ${message}` };
  }
  const message = err instanceof Error ? err.message : String(err);
  // A call the server stopped answering (gRPC UNAVAILABLE, e.g. the server died while watching).
  if (err instanceof ServiceError && /\bUNAVAILABLE\b/.test(`${message} ${String(err.cause)}`))
    return {
      exit: 'unreachable',
      message: `the Temporal server at ${temporalAddress} (TEMPORAL_ADDRESS) stopped answering: ${message}`,
    };
  return { exit: 'failed', message };
}

/** The end of `--help`: the exit codes, one per line. */
export function exitCodesHelp(): string {
  return ['', 'Exit codes:', ...EXIT_CODES.map((e) => `  ${String(e.code).padStart(3)}  ${e.meaning}`)].join(
    '\n',
  );
}

/** The README's table of exit codes (config.test.ts-style check: the README must contain it). */
export function exitCodesMarkdown(): string {
  return [
    '| exit | meaning |',
    '| --- | --- |',
    ...EXIT_CODES.map((e) => `| ${e.code} | ${e.meaning.replace(/\|/g, '\\|')} |`),
  ].join('\n');
}
