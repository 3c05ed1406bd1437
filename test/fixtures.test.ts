/**
 * Every fixture in fixtures/ (made by fuzz/make-fixtures.ts from failures the fuzz campaign
 * found) through every command: cat, read, extract, the library's open/read, index and info.
 * fixtures/expected.json says what each must give: a clean error (non-zero exit, one line, no
 * stack) whose message matches a pattern, the exact original bytes (by sha256), or for info no
 * crash and, on success, the true size. The real tool's verdict on each file is in the JSON too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fixture } from '../fuzz/expected.js';
import { judge, runMeasured, type Outcome } from '../fuzz/run.js';
import { cliPath, sha256, tempDir } from './helpers/tools.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const LIB_READ = fileURLToPath(new URL('../dist/fuzz/lib-read.js', import.meta.url));
const { fixtures } = JSON.parse(readFileSync(join(FIXTURES, 'expected.json'), 'utf8')) as { fixtures: Fixture[] };
const TIMEOUT_MS = 20_000;

let dir: { path: string; remove: () => void };
beforeAll(() => (dir = tempDir('seekz-fixtures-')));
afterAll(() => dir.remove());

async function run(fixture: Fixture, command: string): Promise<Outcome> {
  const file = join(FIXTURES, fixture.file);
  const out = join(dir.path, `${fixture.file}.${command}.out`);
  const seekz = (args: string[]) => runMeasured(process.execPath, [cliPath('seekz'), ...args], { timeoutMs: TIMEOUT_MS, rssFile: `${out}.rss` });
  const size = String(fixture.size);
  if (command === 'cat') return seekz(['cat', file]);
  if (command === 'read') return seekz(['read', file, '--offset', '0', '--length', size]);
  if (command === 'info') return seekz(['info', file]);
  if (command === 'index') return seekz(['index', file, '-q', '-f', '--format', 'seekz', '-o', out]);
  if (command === 'lib') return runMeasured(process.execPath, [LIB_READ, file, '0', size], { timeoutMs: TIMEOUT_MS, rssFile: `${out}.rss` });
  const outcome = await seekz(['extract', file, '--range', `0:${size}`, '-o', out, '-q', '-f']);
  return { ...outcome, stdout: outcome.status === 0 ? readFileSync(out) : Buffer.alloc(0) };
}

for (const fixture of fixtures) {
  describe.concurrent(`${fixture.file}: ${fixture.why} (${fixture.tool})`, () => {
    for (const [command, expected] of Object.entries(fixture.expect)) {
      it(`${command}: ${'error' in expected ? `clean error /${expected.error}/` : 'sha256' in expected ? (expected.sha256 ? `exact bytes${expected.orError ? ' or a clean error' : ''}` : 'succeeds') : 'no crash, true size'}`, async () => {
        const outcome = await run(fixture, command);
        const { verdict, why } = judge(outcome, { check: () => true });
        const seen = `${verdict} (exit ${outcome.status}${outcome.signal ? ` ${outcome.signal}` : ''}): ${why || outcome.stderr.trim()}`;
        if ('error' in expected) {
          expect(verdict, seen).toBe('clean-error');
          expect(outcome.stderr, seen).toMatch(new RegExp(expected.error, 'i'));
        } else if ('sha256' in expected) {
          if (verdict === 'clean-error' && expected.orError) return;
          expect(verdict, seen).toBe('exact');
          if (expected.sha256) expect(sha256(outcome.stdout), `${seen}; ${outcome.stdout.length} bytes`).toBe(expected.sha256);
        } else {
          expect(['exact', 'clean-error'], seen).toContain(verdict);
          const stated = /uncompressed: (\d+) bytes/.exec(outcome.stdout.toString())?.[1] ?? /Uncompressed size: .*\((\d+) B\)/.exec(outcome.stdout.toString())?.[1];
          if (outcome.status === 0 && stated !== undefined) expect(Number(stated), `info states the uncompressed size`).toBe(expected.size);
        }
      });
    }
  });
}
