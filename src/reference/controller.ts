import { runDatabaseService } from './databaseService';

runDatabaseService('controller');
