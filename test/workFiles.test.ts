/**
 * A killed worker's work files (a restore's spool, an object index being written) do not stay
 * for ever: the next file of the same name removes those a process no longer running on this
 * host made — never a live sibling worker's, never another host's (two containers sharing a work
 * volume). Real processes and real files; the crash matrix (crashMatrix.test.ts) meets the case
 * for real when it kills a worker restoring objects.
 */
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { processFileName } from '../src/infra/files';

test("a dead process's files with the same prefix are removed; a live one's and another host's stay", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kohakku-dr-work-files-'));
  const host = os.hostname().replace(/[^A-Za-z0-9.]/g, '_');
  const dead = spawnSync('true').pid!;
  const sibling = spawn('sleep', ['60']);
  try {
    const names = {
      deadOurs: `restore-${host}-${dead}-0.jsonl`,
      liveSibling: `restore-${host}-${sibling.pid}-0.jsonl`,
      otherHost: `restore-another.host-${dead}-0.jsonl`,
      otherPrefix: `json-array-${host}-${dead}-0.json`,
    };
    for (const name of Object.values(names)) await fs.writeFile(path.join(dir, name), 'x');
    const mine = await processFileName(dir, 'restore', '.jsonl');
    expect(path.basename(mine)).toMatch(
      new RegExp(`^restore-${host.replace(/\./g, '\\.')}-${process.pid}-\\d+\\.jsonl$`),
    );
    expect((await fs.readdir(dir)).sort()).toEqual(
      [names.liveSibling, names.otherHost, names.otherPrefix].sort(),
    );
  } finally {
    sibling.kill();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
