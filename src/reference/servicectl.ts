/**
 * `node dist/reference/servicectl.js STATE_DIR restart SERVICE` — the restart command the
 * `command` service adapter runs against the reference Kohakku (SERVICE may carry the
 * `kohakku-` prefix of KOHAKKU_SERVICE_NAMES).
 */
import { REFERENCE_SERVICES, restartReferenceService, type ReferenceService } from './supervisor';

async function run(): Promise<void> {
  const [stateDir, verb, rawName] = process.argv.slice(2);
  const name = rawName?.replace(/^kohakku-/, '') as ReferenceService | undefined;
  if (!stateDir || verb !== 'restart' || !name || !REFERENCE_SERVICES.includes(name)) {
    throw new Error(`usage: servicectl STATE_DIR restart ${REFERENCE_SERVICES.join('|')}`);
  }
  const pid = await restartReferenceService(stateDir, name);
  console.log(`restarted ${name} (pid ${pid})`);
}

run().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
