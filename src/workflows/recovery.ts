/**
 * What every recovery workflow shares: plan mode, the approval gate in front of destructive
 * steps, and the measured RTO and RPO.
 */
import { condition, defineSignal, setHandler, workflowInfo } from '@temporalio/workflow';
import { Procedure } from './procedure';

export interface RecoveryCommonInput {
  /** Show each step, what it would touch and the backup it would use — change nothing. */
  plan?: boolean;
  /** Replacing live data is approved in advance; otherwise the workflow waits for the `approve` signal. */
  confirm?: boolean;
  /** When the incident happened (ISO time), for the RPO; the workflow's start when absent. */
  incidentAt?: string;
}

export interface PlanStep {
  step: string;
  action: string;
  touches: string[];
  destructive: boolean;
}

export interface RecoveryPlan {
  procedure: string;
  plan: true;
  backupId?: string;
  backupCreatedAt?: string;
  backupVerified?: boolean;
  steps: PlanStep[];
}

export interface Measurements {
  startedAt: string;
  /** Start of the recovery to verified-healthy, in seconds. */
  rtoSeconds: number;
  incidentAt: string;
  backupCreatedAt?: string;
  /** Incident time minus the backup's time, in seconds: the window of writes lost. */
  rpoSeconds?: number;
}

export interface Approval {
  by?: string;
  note?: string;
}

export const approveSignal = defineSignal<[Approval]>('approve');

/** Registers the approve signal; returns the gate that destructive steps wait on. */
export function approvalGate(procedure: Procedure, confirmedInInput: boolean) {
  let approval: Approval | undefined = confirmedInInput ? { note: 'confirm: true in the input' } : undefined;
  setHandler(approveSignal, (a) => {
    approval = a ?? {};
  });
  return async (what: string): Promise<Approval> => {
    if (!approval) {
      procedure.waiting(
        `approval to ${what}: send the "approve" signal (kohakku-dr approve WORKFLOW_ID), or cancel to leave everything as it is`,
      );
      await condition(() => approval !== undefined);
      procedure.waiting(undefined);
    }
    return approval!;
  };
}

export function measure(
  startedMs: number,
  incidentAt: string | undefined,
  backupCreatedAt: string | undefined,
): Measurements {
  const now = Date.now();
  const incident = incidentAt ? Date.parse(incidentAt) : startedMs;
  return {
    startedAt: new Date(startedMs).toISOString(),
    rtoSeconds: Math.round((now - startedMs) / 100) / 10,
    incidentAt: new Date(incident).toISOString(),
    backupCreatedAt,
    rpoSeconds: backupCreatedAt ? Math.round((incident - Date.parse(backupCreatedAt)) / 100) / 10 : undefined,
  };
}

/**
 * The start every recovery shares: its phases (progress query, UI details), the approval gate,
 * a recovery id unique to this run (staging and moved-aside names derive from it), the clock.
 */
export function startRecovery(name: string, steps: readonly string[], confirmed: boolean) {
  const procedure = new Procedure(name, steps);
  const approve = approvalGate(procedure, confirmed);
  const info = workflowInfo();
  return { procedure, approve, recoveryId: `${info.workflowId}/${info.runId}`, started: Date.now() };
}
