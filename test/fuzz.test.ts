/**
 * A seeded slice of the fuzz campaign (fuzz/fuzz.ts) in every `npm test`: a few hundred damaged
 * .gz, .xz, .zst and sidecar-index cases, a few NBD request streams and the ENOSPC runs, judged by the
 * real tools. None may crash, hang, print wrong data with exit 0, or pass 1 GiB of RSS. The
 * table is printed either way, and each bad verdict comes with its one-line repro.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/tools.js';

const FUZZ = fileURLToPath(new URL('../dist/fuzz/fuzz.js', import.meta.url));
const SEED = 20261123;
const CASES = 240;

let dir: { path: string; remove: () => void };
beforeAll(() => (dir = tempDir('seekz-fuzz-test-')));
afterAll(() => dir.remove());

describe(`fuzz campaign, seed ${SEED}, ${CASES} cases`, () => {
  it('gives no crash, hang, silent wrong data or run over 1 GiB', { timeout: 240_000 }, async () => {
    const json = join(dir.path, 'fuzz.json');
    const output = await new Promise<{ status: number | null; text: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [FUZZ, '--cases', String(CASES), '--seed', String(SEED), '--json', json], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      child.on('error', reject);
      child.on('close', (status) => resolve({ status, text }));
    });
    console.log(output.text);
    const report = JSON.parse(readFileSync(json, 'utf8')) as { bad: { verdict: string; row: string; number?: number; detail: string }[]; casesRun: number };
    expect(report.casesRun).toBeGreaterThan(0);
    expect(report.bad.map((entry) => `${entry.verdict} ${entry.row} case ${entry.number}: ${entry.detail}`)).toEqual([]);
    expect(output.status).toBe(0);
  });
});
