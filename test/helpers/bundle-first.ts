/**
 * vitest's global setup: bundles the commands and the worker thread from the current sources
 * (scripts/bundle.mjs, well under a second) before any test runs. Tests run the bundle that ships
 * (test/helpers/tools.ts cliPath), and src/ under test starts its worker threads from it
 * (vitest.config.ts, SEEKZ_TEST_WORKER), so no test can run code older than its sources.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  execFileSync(process.execPath, [fileURLToPath(new URL('../../scripts/bundle.mjs', import.meta.url))], { stdio: 'inherit' });
}
