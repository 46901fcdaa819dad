import { runDatabaseService } from './databaseService';

runDatabaseService('dispatcher');
