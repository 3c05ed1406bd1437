/**
 * Crash safety of in-place patching on .xz and .zst, as test/patch-crash.test.ts does for gzip
 * (with fewer kills; the fuzz campaign, `npm run fuzz -- --only patch`, does 100 a format): a
 * `seekz patch` child is SIGKILLed at moments spread over its edit; afterwards recovery must leave
 * the file all-old or all-new: `xz -t` / `zstd -t` passes and `xz -dc` / `zstd -dc` hashes to
 * exactly the old or the new content.
 * A kill that leaves the undo journal is rolled back by the next reader (`seekz cat`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, watch, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { journalPath, recoverIfInterrupted } from '../src/edit/patch.js';
import { cliPath, diskLikeData, noise, requireTool, runCli, tempDir } from './helpers/tools.js';

const MIB = 1024 * 1024;
const IMAGE_SIZE = 16 * MIB;
const STORED = { start: 1 * MIB, end: 15 * MIB };
const EDIT = { offset: 1 * MIB + 4321, length: 13 * MIB };
const KILL_ROUNDS = 20;
const MAX_KILL_ROUNDS = 60;
const MIN_MID_EDIT_KILLS = 2;

/** Each format seekz edits in place besides gzip: its writer with the stored range, and the real tools that judge it. */
const FORMATS = [
  { ext: 'xz', writer: 'seekxz', args: ['-q', '-k', '--block-size', '1MiB'], test: ['xz', '-t'], decompress: ['xz', '-dc'], pkg: 'xz-utils' },
  { ext: 'zst', writer: 'seekzstd', args: ['-q', '--frame-size', '1MiB'], test: ['zstd', '-q', '-t'], decompress: ['zstd', '-dc'], pkg: 'zstd' },
] as const;
type Format = (typeof FORMATS)[number];

let dir: { path: string; remove: () => void };
let old: Uint8Array;
let editPath: string;
let allowed: Record<string, string>;
const file = (name: string) => join(dir.path, name);
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Starts `seekz patch` with the big edit; `onEvent` runs the moment its lock file, then its undo
 * journal, appears (inotify, not polling, so the test does not steal CPU from the patcher).
 */
function startPatch(path: string, onEvent: (event: 'lock' | 'journal', child: ChildProcess) => void): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const names = { lock: `${basename(path)}.seekz-lock`, journal: basename(journalPath(path)) };
  let child: ChildProcess | undefined;
  const seen = new Set<string>();
  const watcher = watch(dirname(path), (_event, name) => {
    for (const event of ['lock', 'journal'] as const) {
      if (name !== names[event] || seen.has(event) || !child) continue;
      seen.add(event);
      onEvent(event, child);
    }
  });
  child = spawn(process.execPath, [cliPath('seekz'), 'patch', path, '--offset', String(EDIT.offset), '--data', editPath, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child!.on('close', (code, signal) => resolve({ code, signal, stderr })),
  ).finally(() => watcher.close());
  return { child, exited };
}

/** xz -t / zstd -t passes, and xz -dc / zstd -dc gives the old or the new content: which one. */
async function toolState(format: Format, path: string): Promise<string> {
  const test = runTool(format.test[0], [...format.test.slice(1), path]);
  const content = runTool(format.decompress[0], [...format.decompress.slice(1), path]);
  const [tested, decompressed] = await Promise.all([test, content]);
  expect(tested.code, `${format.test.join(' ')}: ${tested.stderr}`).toBe(0);
  expect(decompressed.code, `${format.decompress.join(' ')}: ${decompressed.stderr}`).toBe(0);
  const state = allowed[decompressed.sha];
  expect(state, `${format.decompress.join(' ')} gives neither the old nor the new content`).toBeDefined();
  return state!;
}

function runTool(command: string, args: string[]): Promise<{ code: number | null; stderr: string; sha: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => hash.update(chunk));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr, sha: hash.digest('hex') }));
  });
}

beforeAll(() => {
  dir = tempDir('seekz-patch-crash-');
  old = diskLikeData(IMAGE_SIZE, 17);
  writeFileSync(file('image.img'), old);
  const edit = noise(EDIT.length, 23);
  editPath = file('edit.bin');
  writeFileSync(editPath, edit);
  const next = old.slice();
  next.set(edit, EDIT.offset);
  allowed = { [sha(old)]: 'old', [sha(next)]: 'new' };
});

afterAll(() => dir?.remove());

for (const format of FORMATS) describe(`SIGKILL during a patch of .${format.ext}`, () => {
  let basePath: string;
  beforeAll(() => {
    requireTool(format.test[0], format.pkg);
    basePath = file(`base.${format.ext}`);
    const made = runCli(format.writer, [...format.args, '--store', `${STORED.start}:${STORED.end}`, file('image.img'), '-o', basePath]);
    expect(made.status, made.stderr).toBe(0);
  });
  const stateOf = (path: string) => toolState(format, path);

  it(`leaves all-old or all-new after at least ${KILL_ROUNDS} kills, every time`, async () => {
    const path = file(`killed.${format.ext}`);
    const counts = { old: 0, new: 0, midEdit: 0, rounds: 0 };
    const enough = () => counts.rounds >= KILL_ROUNDS && counts.old > 0 && counts.new > 0 && counts.midEdit >= MIN_MID_EDIT_KILLS;
    while (!enough() && counts.rounds < MAX_KILL_ROUNDS) {
      // One unkilled run, lock to exit: the kills of this batch are spread over it (and 10 % more).
      // The journal lives only while the new bytes are written and synced: half the kills are
      // timed from its appearance, over how long it lived in this run.
      copyFileSync(basePath, path);
      const at = { lock: 0, journal: 0 };
      const timing = startPatch(path, (event) => (at[event] = performance.now()));
      const timed = await timing.exited;
      expect(timed.code, timed.stderr).toBe(0);
      const ended = performance.now();
      const windows = { lock: (ended - at.lock) * 1.1, journal: (ended - (at.journal || at.lock)) * 1.1 };
      for (let slot = 0; slot < 10; slot++) {
        const from = slot % 2 === 0 ? 'lock' : 'journal';
        const delay = ((Math.floor(slot / 2) + Math.random()) * windows[from]) / 5;
        copyFileSync(basePath, path);
        let timer: NodeJS.Timeout | undefined;
        const patch = startPatch(path, (event, child) => {
          if (event === from) timer = setTimeout(() => child.kill('SIGKILL'), delay);
        });
        const exit = await patch.exited;
        clearTimeout(timer);
        const hadJournal = existsSync(journalPath(path));
        const recovered = await recoverIfInterrupted(path);
        const state = await stateOf(path);
        if (hadJournal) {
          expect(recovered).toBe('rolled-back');
          expect(state).toBe('old');
          counts.midEdit++;
        }
        if (exit.signal === null) expect(state).toBe('new');
        counts[state as 'old' | 'new']++;
        counts.rounds++;
      }
    }
    console.log(`patch-crash-${format.ext}: ${JSON.stringify(counts)}`);
    expect(counts.old).toBeGreaterThan(0);
    expect(counts.new).toBeGreaterThan(0);
    expect(counts.midEdit, 'kills that landed while the journal existed').toBeGreaterThanOrEqual(MIN_MID_EDIT_KILLS);
  }, 900_000);

  it('seekz cat rolls back an edit killed mid-write before it reads', async () => {
    const path = file(`cat.${format.ext}`);
    for (let attempt = 0; attempt < 20 && !existsSync(journalPath(path)); attempt++) {
      copyFileSync(basePath, path);
      let polling: NodeJS.Timeout | undefined;
      const patch = startPatch(path, (event, child) => {
        if (event !== 'lock') return;
        polling = setInterval(() => {
          if (!existsSync(journalPath(path))) return;
          clearInterval(polling);
          child.kill('SIGKILL');
        }, 1);
      });
      await patch.exited;
      clearInterval(polling);
    }
    expect(existsSync(journalPath(path)), 'no kill left a journal in 20 tries').toBe(true);
    const cat = spawn(process.execPath, [cliPath('seekz'), 'cat', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    cat.stdout.on('data', (chunk: Buffer) => hash.update(chunk));
    let stderr = '';
    cat.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const code = await new Promise<number | null>((resolve) => cat.on('close', resolve));
    expect(code, stderr).toBe(0);
    expect(allowed[hash.digest('hex')]).toBe('old');
    expect(existsSync(journalPath(path))).toBe(false);
    expect(await stateOf(path)).toBe('old');
  }, 300_000);
});
