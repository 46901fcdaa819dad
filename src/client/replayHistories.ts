/**
 * `node dist/client/replayHistories.js DIR…` — replays every recorded workflow history
 * (`*.history.pb`: binary temporal.api.history.v1.History, as `handle.fetchHistory()` gives it) against the workflow code of this build with
 * Worker.runReplayHistories, and exits non-zero naming each history that no longer replays.
 * CI runs it on test/histories (upgrade safety); before deploying, run it on histories of your
 * own recoveries in flight. Binary, not JSON: the SDK's JSON history
 * conversion trips over two protobufjs copies in this dependency tree (`type must be a Type`).
 */
import { workflowCodeOptions } from '../bundleWorkflows';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';

async function run(): Promise<void> {
  const dirs = process.argv.slice(2);
  if (dirs.length === 0) throw new Error('usage: replayHistories DIR…');
  const files: string[] = [];
  for (const dir of dirs)
    for (const f of (await fs.readdir(dir)).sort())
      if (f.endsWith('.history.pb')) files.push(path.join(dir, f));
  const histories = (async function* () {
    for (const file of files)
      yield {
        workflowId: path.basename(file, '.history.pb'),
        history: temporal.api.history.v1.History.decode(await fs.readFile(file)),
      };
  })();
  const failures: string[] = [];
  let replayed = 0;
  for await (const result of Worker.runReplayHistories(workflowCodeOptions(), histories)) {
    replayed++;
    if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
  }
  console.log(`replayed ${replayed} histories, ${failures.length} failed`);
  for (const f of failures) console.log(`✘ ${f}`);
  if (failures.length || replayed !== files.length) process.exit(1);
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
