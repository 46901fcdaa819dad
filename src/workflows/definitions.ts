/**
 * Signals, queries and the shapes they carry, referenced by value by the workflows, the CLI,
 * the drill and the tests (`handle.signal(approveSignal, …)`, `handle.query(progressQuery)`),
 * never by strings typed in several places.
 */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { StoreName } from '../domain/stores';

export type StepStatus = 'pending' | 'running' | 'done' | 'failed' | 'skipped';

export interface StepProgress {
  name: string;
  status: StepStatus;
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  detail?: string;
}

export interface Progress {
  procedure: string;
  status: 'running' | 'completed' | 'failed' | 'cleaning-up';
  startedAt: string;
  steps: StepProgress[];
  /** What the workflow is waiting for right now, in words. */
  waitingFor?: string;
  /** A destructive step waiting for approval: what it would replace, evaluated just now. */
  awaitingApproval?: { step: string; replaces: string[] };
  /** Things that went wrong without failing the run (a cleanup step, an ignored approval). */
  warnings: string[];
  error?: string;
}

export const progressQuery = defineQuery<Progress>('progress');

export interface Approval {
  by?: string;
  note?: string;
}

/** Approves the destructive step the recovery is waiting for (its progress says which, and what it replaces). */
export const approveSignal = defineSignal<[Approval]>('approve');

/** Releases a target lock held by a recovery (sent by the recovery itself when it ends). */
export const releaseLockSignal = defineSignal('release');

export interface PlanStep {
  step: string;
  action: string;
  touches: string[];
  destructive: boolean;
  /** For a destructive step: what it would replace if it ran now. */
  replaces?: string[];
}

export interface BackupChoice {
  id: string;
  createdAt: string;
  verified: boolean;
  /** Why this backup: e.g. "newest verified set; skipped 1 newer". */
  choice?: string;
  skipped?: { id: string; reason: string }[];
  /** The store it is read from (primary when absent: runs from before the replica). */
  source?: StoreName;
  /** That store, for people: `s3://kohakku-backups on https://…` or a directory. */
  sourceLocation?: string;
}

export interface RecoveryPlan {
  procedure: string;
  plan: true;
  backup?: BackupChoice;
  /** Kept for scripts written against 0.1. */
  backupId?: string;
  backupCreatedAt?: string;
  backupVerified?: boolean;
  steps: PlanStep[];
}

export interface Measurements {
  startedAt: string;
  /** Start of the recovery to verified-healthy, in seconds (waits for approval included). */
  rtoSeconds: number;
  /** How long the recovery waited for approvals, in seconds (0 when approved in advance). */
  approvalWaitSeconds?: number;
  /** The RTO without those waits: what the recovery itself took. */
  rtoWithoutApprovalSeconds?: number;
  incidentAt: string;
  backupCreatedAt?: string;
  /** Incident time minus the backup's time, in seconds: the window of writes lost. */
  rpoSeconds?: number;
}

export interface ApprovalRecord {
  step: string;
  replaces: string[];
  by?: string;
  note?: string;
  at: string;
}

/** What every recovery returns; each adds its own details beside these fields. */
export interface RecoveryEnvelope {
  procedure: string;
  recoveryId: string;
  outcome: 'completed';
  backup?: BackupChoice;
  approvals: ApprovalRecord[];
  warnings: string[];
  steps: StepProgress[];
  startedAt: string;
  completedAt: string;
  durationMs: number;
  measurements: Measurements;
  /** Where the run's report (JSON + Markdown) was written; absent in runs from before 0.3.6. */
  report?: string[];
}
