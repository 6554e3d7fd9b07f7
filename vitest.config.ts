import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/helpers/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Tests that start servers and databases should not pile up beyond the machine's two cores.
    maxWorkers: 2,
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts', 'models/**/*.ts', 'bots/**/*.ts', 'webhooks/**/*.ts'],
      reporter: ['text-summary', 'html'],
      // What the suite reached when the threshold was set, rounded down: coverage may only go up.
      thresholds: { lines: 90, branches: 77 },
    },
  },
});
