// Every workflow, for the worker's workflowsPath. One file per runbook procedure.
export { postgresBackup } from './postgresBackup';
export { totalDatabaseLoss } from './totalDatabaseLoss';
export { progressQuery } from './procedure';
