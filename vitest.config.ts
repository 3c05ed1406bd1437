import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests that spawn real tools and worker threads share 2 cores; two files at a time keeps
    // the suite fast without starving the timing-sensitive kill tests.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
