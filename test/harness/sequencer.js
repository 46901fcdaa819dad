/**
 * Jest's own order of test files, except that the secret sweep runs last: it reads every history
 * and every worker and CLI log the other files produced (harness/secrets.ts).
 */
const Sequencer = require('@jest/test-sequencer').default;

const LAST = /secretSweep\.test\.ts$/;

class SweepLast extends Sequencer {
  async sort(tests) {
    const sorted = await super.sort(tests);
    return [...sorted.filter((t) => !LAST.test(t.path)), ...sorted.filter((t) => LAST.test(t.path))];
  }
}

module.exports = SweepLast;
