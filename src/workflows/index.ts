// Every workflow, for the worker's workflowsPath and for clients that start them by value.
// One file per runbook procedure; the recoveries are declared on the engine in ./engine.
export { fullCluster } from './fullCluster';
export { nightlyBackup } from './nightlyBackup';
export { objectStoreBackup } from './objectStoreBackup';
export { objectStoreLoss } from './objectStoreLoss';
export { postgresBackup } from './postgresBackup';
export { redisBackup } from './redisBackup';
export { redisLoss } from './redisLoss';
export { tableRestore } from './tableRestore';
export { targetLock } from './targetLock';
export { totalDatabaseLoss } from './totalDatabaseLoss';
export { verifyBackupSet } from './verifyBackupSet';
export { markRestorePoint, pitrBackup, pitrSetup, pitrStatus } from './pitr';
export { pointInTimeRecovery } from './pointInTimeRecovery';
export { deliverNotification } from './notify';
