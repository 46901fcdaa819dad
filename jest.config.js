/**
 * One real stack (PostgreSQL, Redis, MinIO, Temporal) per run, shared by every test file; files
 * run one at a time because they share it and the machine has two cores.
 */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: { ignoreCodes: [151002] } }],
  },
  globalSetup: '<rootDir>/test/harness/globalSetup.ts',
  globalTeardown: '<rootDir>/test/harness/globalTeardown.ts',
  // The secret sweep last: it reads what every other file left.
  testSequencer: '<rootDir>/test/harness/sequencer.js',
  maxWorkers: 1,
  testTimeout: 300000,
  verbose: true,
};
