import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/** The xz tests run twice: on the native addon, and on node-liblzma (SEEKZ_NATIVE=0 reaches CLIs and worker threads too). */
const XZ_TESTS = ['test/xz.test.ts', 'test/xz-interop.test.ts', 'test/trust-xz-signals.test.ts', 'test/xz-zero-blocks.test.ts', 'test/xz-native.test.ts'];

export default defineConfig({
  // src/workers/pool.ts under test is TypeScript, which a worker thread cannot load: it starts the
  // bundled worker instead, which the global setup has just built from the same sources.
  define: { SEEKZ_TEST_WORKER: JSON.stringify(fileURLToPath(new URL('dist/bin/worker.js', import.meta.url))) },
  test: {
    globalSetup: ['test/helpers/bundle-first.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests that spawn real tools and worker threads share 2 cores; two files at a time keeps
    // the suite fast without starving the timing-sensitive kill tests.
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'xz-fallback', include: XZ_TESTS, env: { SEEKZ_NATIVE: '0' } } },
    ],
  },
});
