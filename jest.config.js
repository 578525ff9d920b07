/** One project per package, plus the end-to-end tests that start real `dpl` processes. */
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.jest.json' }] };
const common = {
  testEnvironment: 'node',
  rootDir: __dirname,
  transform,
  // Tests run against the sources, so no build is needed for unit tests.
  moduleNameMapper: { '^@dpl/worker/fork$': '<rootDir>/packages/worker/src/executor/fork', '^@dpl/(.*)$': '<rootDir>/packages/$1/src' },
};

module.exports = {
  projects: [
    { ...common, displayName: 'core', testMatch: ['<rootDir>/packages/core/test/**/*.test.ts'] },
    { ...common, displayName: 'cli', testMatch: ['<rootDir>/packages/cli/test/**/*.test.ts'] },
    { ...common, displayName: 'wire', testMatch: ['<rootDir>/packages/wire/test/**/*.test.ts'] },
    { ...common, displayName: 'head', testMatch: ['<rootDir>/packages/head/test/**/*.test.ts'] },
    { ...common, displayName: 'worker', testMatch: ['<rootDir>/packages/worker/test/**/*.test.ts'] },
    { ...common, displayName: 'client', testMatch: ['<rootDir>/packages/client/test/**/*.test.ts'] },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
      // e2e tests run the built CLI (`npm test` builds first) as child processes.
      moduleNameMapper: {},
    },
    {
      ...common,
      displayName: 'integration',
      // Real head and worker processes on loopback; the SDK is used from source.
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
    },
  ],
  testTimeout: 60_000,
};
