// Every workflow, for the worker's workflowsPath. One file per runbook procedure.
export { fullCluster } from './fullCluster';
export { nightlyBackup } from './nightlyBackup';
export { objectStoreBackup } from './objectStoreBackup';
export { objectStoreLoss } from './objectStoreLoss';
export { postgresBackup } from './postgresBackup';
export { redisBackup } from './redisBackup';
export { redisLoss } from './redisLoss';
export { tableRestore } from './tableRestore';
export { totalDatabaseLoss } from './totalDatabaseLoss';
export { verifyBackupSet } from './verifyBackupSet';
export { progressQuery } from './procedure';
