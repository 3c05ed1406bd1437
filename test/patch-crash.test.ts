/**
 * Crash safety of in-place patching, with real processes and no mocks. A `seekz patch` child is
 * SIGKILLed at moments spread over its whole run; afterwards recovery (the library's
 * `recoverIfInterrupted`, or simply the next `seekz patch` / `seekz extract`) must leave the gzip
 * file all-old or all-new: `gzip -t` passes and the decompressed content hashes to exactly the old
 * or exactly the new content. Damaged journals, torn temp journals and the lock are covered too.
 * Bad journals are named after the error they must give.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, existsSync, readFileSync, symlinkSync, utimesSync, watch, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchFile, recoverIfInterrupted, journalPath } from '../src/edit/patch.js';
import { SeekzError, type ErrorCode } from '../src/errors.js';
import { cliPath, diskLikeData, requireTool, runCli, tempDir, noise } from './helpers/tools.js';

const MIB = 1024 * 1024;
const IMAGE_SIZE = 24 * MIB;
const STORED = { start: 2 * MIB, end: 22 * MIB };
// Big enough that the time the journal exists (writing the new bytes, fsync) is a fair share of
// the run: with 12 MiB only about one kill in eight landed there.
const BIG_EDIT = { offset: 3 * MIB, length: 18 * MIB };
const KILL_ROUNDS = 40;
const MAX_KILL_ROUNDS = 120;
const MIN_MID_EDIT_KILLS = 3;

interface Edit {
  offset: number;
  data: Uint8Array;
}

let dir: { path: string; remove: () => void };
let oldContent: Uint8Array;
let basePath: string; // the pristine partial-deflate output; every case starts from a copy
let bigEdit: Edit;
let bigEditPath: string;
let oldSha: string;
let newSha: string;

const file = (name: string) => join(dir.path, name);
const lockPath = (path: string) => `${path}.seekz-lock`;
const tempJournalPath = (path: string) => `${journalPath(path)}.tmp`;


/** sha256 of the old content with `edits` laid over it, hashed piecewise: no patched copy is built. */
function contentSha(edits: Edit[]): string {
  const hash = createHash('sha256');
  let at = 0;
  for (const edit of [...edits].sort((a, b) => a.offset - b.offset)) {
    if (edit.offset < at) throw new Error('test bug: overlapping edits');
    hash.update(oldContent.subarray(at, edit.offset)).update(edit.data);
    at = edit.offset + edit.data.length;
  }
  return hash.update(oldContent.subarray(at)).digest('hex');
}

const fileSha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

function writeEdit(name: string, edit: Edit): string {
  writeFileSync(file(name), edit.data);
  return file(name);
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
}

/** Starts a process; `exited` resolves once it has exited and its pipes are closed. */
function start(command: string, args: string[]): { child: ChildProcess; exited: Promise<Exit> } {
  const began = performance.now();
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stderr, ms: performance.now() - began }));
  });
  return { child, exited };
}

function startPatch(path: string, offset: number, dataPath: string) {
  return start(process.execPath, [cliPath('seekz'), 'patch', path, '--offset', String(offset), '--data', dataPath]);
}

/**
 * Starts the big edit on `path` and calls `onLock` the moment its lock file appears: the first
 * thing the patcher creates. Watched with inotify (fs.watch), not polled, so the test does not
 * steal CPU from the patcher it is timing.
 */
function startPatchWatchingLock(path: string, onLock: (child: ChildProcess) => void) {
  const lockName = basename(lockPath(path));
  let seen = false;
  let patch: ReturnType<typeof startPatch> | undefined;
  const watcher = watch(dirname(path), (_event, name) => {
    if (seen || name !== lockName || !patch) return;
    seen = true;
    onLock(patch.child);
  });
  patch = startPatch(path, BIG_EDIT.offset, bigEditPath);
  const exited = patch.exited.finally(() => watcher.close());
  return { child: patch.child, exited, lockSeen: () => seen };
}

/** `gzip -t`: exit status and message. */
async function gzipTest(path: string): Promise<{ code: number | null; stderr: string }> {
  const { code, stderr } = await start('gzip', ['-t', path]).exited;
  return { code, stderr };
}

/** sha256 of what gzip decompresses, streamed; rejects if gzip reports an error. */
function decompressedSha(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('gzip', ['-dc', path], { stdio: ['ignore', 'pipe', 'pipe'] });
    const hash = createHash('sha256');
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => hash.update(chunk));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(hash.digest('hex')) : reject(new Error(`gzip -dc ${path} exited ${code}: ${stderr}`))));
  });
}

/** Nothing an edit leaves beside the file while it runs may survive recovery. */
function expectNoLeftovers(path: string): void {
  expect(existsSync(journalPath(path)), 'journal left behind').toBe(false);
  expect(existsSync(tempJournalPath(path)), 'temp journal left behind').toBe(false);
  expect(existsSync(lockPath(path)), 'lock left behind').toBe(false);
}

/** The file passes gzip -t and decompresses to one of `allowed` (sha256 → name); returns the name. */
async function expectConsistent(path: string, allowed: Record<string, string>): Promise<string> {
  const [tested, sha] = await Promise.all([gzipTest(path), decompressedSha(path)]);
  expect(tested, `gzip -t ${path}`).toEqual({ code: 0, stderr: '' });
  const name = allowed[sha];
  expect(name, `decompressed sha256 ${sha} is none of ${Object.values(allowed).join(', ')}`).toBeDefined();
  return name!;
}

async function expectSeekzError(promise: Promise<unknown>, code: ErrorCode): Promise<SeekzError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(SeekzError);
  expect((error as SeekzError).code).toBe(code);
  return error as SeekzError;
}

/**
 * Runs the big edit on a fresh copy and SIGKILLs it while `when(path)` holds (polled every
 * millisecond or so), plus up to `extraMs` more. Retries until the kill leaves a file named by
 * `mustLeave`; honest about the odds, it gives up after 20 tries.
 */
async function killWhile(path: string, when: (path: string) => boolean, mustLeave: string, extraMs = 0): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    copyFileSync(basePath, path);
    const { child, exited } = startPatch(path, BIG_EDIT.offset, bigEditPath);
    const poll = setInterval(() => {
      if (!when(path)) return;
      clearInterval(poll);
      setTimeout(() => child.kill('SIGKILL'), Math.random() * extraMs);
    }, 1);
    const exit = await exited;
    clearInterval(poll);
    if (exit.signal === 'SIGKILL' && existsSync(mustLeave)) return;
  }
  throw new Error(`20 patch runs were never killed while ${mustLeave} existed; the window is too narrow on this machine`);
}

beforeAll(async () => {
  requireTool('gzip', 'gzip');
  requireTool('sleep', 'coreutils');
  dir = tempDir('seekz-patch-crash-');
  oldContent = diskLikeData(IMAGE_SIZE, 7);
  // The stored range holds disk-like data too, but the big edit makes most of it noise.
  writeFileSync(file('image.img'), oldContent);
  basePath = file('base.gz');
  const made = runCli('partial-deflate', [file('image.img'), basePath, String(STORED.start), String(STORED.end), '-q']);
  expect(made.status, made.stderr).toBe(0);
  bigEdit = { offset: BIG_EDIT.offset, data: noise(BIG_EDIT.length, 99) };
  bigEditPath = writeEdit('big-edit.bin', bigEdit);
  oldSha = contentSha([]);
  newSha = contentSha([bigEdit]);
  expect(await decompressedSha(basePath)).toBe(oldSha);
});

afterAll(() => dir?.remove());

describe('SIGKILL at moments spread over a patch', () => {
  it(`leaves all-old or all-new after at least ${KILL_ROUNDS} kills, every time`, async () => {
    const path = file('killed.gz');
    const allowed = { [oldSha]: 'old', [newSha]: 'new' };

    /**
     * One unkilled run: how long the edit takes, lock to exit. Node's start-up and reading --data
     * come before the lock and cannot touch the file, and under load their length varies more than
     * the edit's; so the kill clock starts when the lock appears. Spawn-to-exit is kept for the log.
     */
    const timeOneRun = async () => {
      copyFileSync(basePath, path);
      let lockedAt = 0;
      const patch = startPatchWatchingLock(path, () => (lockedAt = performance.now()));
      const exit = await patch.exited;
      const edit = performance.now() - lockedAt;
      expect(exit.code, exit.stderr).toBe(0);
      expect(patch.lockSeen(), 'the lock file was created').toBe(true);
      expect(await expectConsistent(path, allowed)).toBe('new');
      return { edit, whole: exit.ms };
    };

    const counts = { old: 0, new: 0, midEdit: 0, tornTempJournal: 0, finishedBeforeKill: 0, rounds: 0 };
    const durations: string[] = [];
    const enough = () =>
      counts.rounds >= KILL_ROUNDS && counts.old > 0 && counts.new > 0 && counts.midEdit >= MIN_MID_EDIT_KILLS;
    const began = performance.now();
    await timeOneRun(); // warms the page cache; not counted
    // Other tests may load the machine, and then D drifts: it is measured again before every batch
    // of 10 kills. Batches continue past KILL_ROUNDS until the kills that found a journal are
    // enough; the delays stay uniform, only their number grows. The loop ends on counts, never on
    // a clock, so a busy machine makes it slower, not failed.
    while (!enough() && counts.rounds < MAX_KILL_ROUNDS) {
      const timed = await timeOneRun();
      durations.push(`${timed.edit.toFixed(0)}/${timed.whole.toFixed(0)}`);
      // Delays uniform over [0, 1.1 D], stratified: one per slot of width 1.1 D / 10, in random
      // order, so the start, the journal window and the end of the edit are hit in every batch.
      const window = timed.edit * 1.1;
      const delays = Array.from({ length: 10 }, (_, slot) => ((slot + Math.random()) * window) / 10);
      delays.sort(() => Math.random() - 0.5);

      for (const delay of delays) {
        copyFileSync(basePath, path);
        let timer: NodeJS.Timeout | undefined;
        const patch = startPatchWatchingLock(path, (child) => (timer = setTimeout(() => child.kill('SIGKILL'), delay)));
        const exit = await patch.exited;
        clearTimeout(timer);
        const finished = exit.signal === null;
        if (finished) expect(exit.code, exit.stderr).toBe(0);

        const hadJournal = existsSync(journalPath(path));
        const hadTempJournal = existsSync(tempJournalPath(path));
        const recovered = await recoverIfInterrupted(path);
        expectNoLeftovers(path);
        const outcome = await expectConsistent(path, allowed);

        if (hadJournal) {
          // The journal was complete, so the file may be half-written: only a rollback makes it whole.
          expect(recovered).toBe('rolled-back');
          expect(outcome).toBe('old');
        } else if (hadTempJournal) {
          expect(recovered).toBe('discarded-incomplete');
          expect(outcome).toBe('old');
        } else {
          expect(recovered).toBe('none');
        }
        if (finished) expect(outcome).toBe('new');

        counts[outcome as 'old' | 'new']++;
        if (hadJournal) counts.midEdit++;
        if (hadTempJournal) counts.tornTempJournal++;
        if (finished) counts.finishedBeforeKill++;
        counts.rounds++;
      }
    }
    const seconds = ((performance.now() - began) / 1000).toFixed(1);
    console.log(
      `patch-crash: D (lock-to-exit/spawn-to-exit ms) per batch ${durations.join(' ')}; ${JSON.stringify(counts)} in ${seconds} s`,
    );

    expect(counts.rounds).toBeGreaterThanOrEqual(KILL_ROUNDS);
    expect(counts.old).toBeGreaterThan(0);
    expect(counts.new).toBeGreaterThan(0);
    expect(counts.midEdit, 'kills that landed while the journal existed').toBeGreaterThanOrEqual(MIN_MID_EDIT_KILLS);
  }, 900_000); // a safety net for a wedged child only: the loop itself is bounded by MAX_KILL_ROUNDS
});

describe('recovery through the CLI', () => {
  it('seekz patch rolls back an interrupted edit, then applies its own', async () => {
    const path = file('cli-recovery.gz');
    await killWhile(path, (target) => existsSync(journalPath(target)), journalPath(path), 30);

    // A different, small edit inside the region the killed edit was overwriting.
    const small: Edit = { offset: 10 * MIB + 12_345, data: noise(4096, 5) };
    const result = runCli('seekz', ['patch', path, '--offset', String(small.offset), '--data', writeEdit('small-edit.bin', small)]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toContain(`rolled back an interrupted edit of ${path}`);
    expectNoLeftovers(path);
    expect(await expectConsistent(path, { [contentSha([small])]: 'old + small edit' })).toBe('old + small edit');
  });

  it('seekz extract rolls back an interrupted edit before reading', async () => {
    const path = file('cli-extract.gz');
    await killWhile(path, (target) => existsSync(journalPath(target)), journalPath(path), 30);

    const range = { start: BIG_EDIT.offset - 1000, end: BIG_EDIT.offset + MIB };
    const out = file('extracted.bin');
    const result = runCli('seekz', ['extract', path, '--range', `${range.start}:${range.end}`, '-o', out, '-f', '-q']);
    expect(result.status, result.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(out), oldContent.subarray(range.start, range.end))).toBe(0);
    expectNoLeftovers(path);
    expect(await expectConsistent(path, { [oldSha]: 'old' })).toBe('old');
  });
});

describe('torn temp journal', () => {
  it('garbage in .seekz-journal.tmp is deleted and the file is left as it was', async () => {
    const path = file('torn-temp.gz');
    copyFileSync(basePath, path);
    writeFileSync(tempJournalPath(path), Buffer.concat([Buffer.from('SZJRNL1\n'), noise(5000, 3)]));
    const before = fileSha(path);

    expect(await recoverIfInterrupted(path)).toBe('discarded-incomplete');
    expectNoLeftovers(path);
    expect(fileSha(path)).toBe(before);
  });

  it('a temp journal cut short by a real SIGKILL is discarded and the file is old', async () => {
    const path = file('torn-temp-killed.gz');
    await killWhile(path, (target) => existsSync(tempJournalPath(target)), tempJournalPath(path));
    if (existsSync(journalPath(path))) throw new Error('test bug: the kill landed after the rename');

    expect(fileSha(path)).toBe(fileSha(basePath)); // the file is not touched before the journal is in place
    expect(await recoverIfInterrupted(path)).toBe('discarded-incomplete');
    expectNoLeftovers(path);
    expect(await expectConsistent(path, { [oldSha]: 'old' })).toBe('old');
  });
});

describe('damaged journals are refused and the file is left untouched', () => {
  let goodJournal: Buffer;

  beforeAll(async () => {
    // A real journal, from a patcher killed mid-edit.
    const path = file('journal-source.gz');
    await killWhile(path, (target) => existsSync(journalPath(target)), journalPath(path), 30);
    goodJournal = readFileSync(journalPath(path));
  });

  /** A pristine copy of the base file with `journal` beside it. */
  function withJournal(name: string, journal: Uint8Array): string {
    const path = file(name);
    copyFileSync(basePath, path);
    writeFileSync(journalPath(path), journal);
    return path;
  }

  it('PATCH_JOURNAL_BAD: one flipped byte', async () => {
    const damaged = Buffer.from(goodJournal);
    damaged[Math.floor(damaged.length / 2)]! ^= 0x40;
    const path = withJournal('PATCH_JOURNAL_BAD-flipped.gz', damaged);
    const before = fileSha(path);

    const error = await expectSeekzError(recoverIfInterrupted(path), 'PATCH_JOURNAL_BAD');
    expect(error.message).toContain('checksum');
    expect(fileSha(path)).toBe(before);
    expect(Buffer.compare(readFileSync(journalPath(path)), damaged), 'the journal is kept for a human to look at').toBe(0);
    expect(existsSync(lockPath(path)), 'lock released after the failure').toBe(false);

    // The CLI refuses the same way, exit 1, and writes nothing.
    const result = runCli('seekz', ['patch', path, '--offset', String(10 * MIB), '--data', bigEditPath]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`patch: journal ${journalPath(path)} is unusable`);
    expect(fileSha(path)).toBe(before);
  });

  it('PATCH_JOURNAL_BAD: cut short', async () => {
    const path = withJournal('PATCH_JOURNAL_BAD-short.gz', goodJournal.subarray(0, goodJournal.length - 1000));
    const before = fileSha(path);
    await expectSeekzError(recoverIfInterrupted(path), 'PATCH_JOURNAL_BAD');
    expect(fileSha(path)).toBe(before);
  });

  it('PATCH_JOURNAL_MISMATCH: a journal beside a file of another size', async () => {
    const path = withJournal('PATCH_JOURNAL_MISMATCH.gz', goodJournal);
    appendFileSync(path, Buffer.from([0]));
    const before = fileSha(path);

    const error = await expectSeekzError(recoverIfInterrupted(path), 'PATCH_JOURNAL_MISMATCH');
    expect(error.message).toContain(`this one has ${readFileSync(path).length}`);
    expect(fileSha(path)).toBe(before);
    expect(existsSync(journalPath(path))).toBe(true);
  });

  it('the undamaged journal rolls back to the old file', async () => {
    const path = withJournal('journal-good.gz', goodJournal);
    expect(await recoverIfInterrupted(path)).toBe('rolled-back');
    expectNoLeftovers(path);
    expect(await expectConsistent(path, { [oldSha]: 'old' })).toBe('old');
  });
});

describe('the lock', () => {
  const small: Edit = { offset: 15 * MIB, data: noise(1000, 11) };
  let smallPath: string;

  beforeAll(() => {
    smallPath = writeEdit('lock-edit.bin', small);
  });

  it('a lock held by a live process refuses the patch; one held by a dead process is taken over', async () => {
    const path = file('locked.gz');
    copyFileSync(basePath, path);
    const before = fileSha(path);
    const sleeper = start('sleep', ['30']);
    try {
      const pid = sleeper.child.pid!;
      writeFileSync(lockPath(path), `${pid}\n`);
      const refused = runCli('seekz', ['patch', path, '--offset', String(small.offset), '--data', smallPath]);
      expect(refused.status).toBe(1);
      expect(refused.stderr).toContain(`(pid ${pid})`);
      expect(fileSha(path)).toBe(before);
      expect(readFileSync(lockPath(path), 'utf8'), 'a live owner keeps its lock').toBe(`${pid}\n`);
    } finally {
      sleeper.child.kill('SIGKILL');
    }
    expect((await sleeper.exited).signal).toBe('SIGKILL');

    // Same lock file, its owner now dead and reaped.
    const taken = runCli('seekz', ['patch', path, '--offset', String(small.offset), '--data', smallPath]);
    expect(taken.status, taken.stderr).toBe(0);
    expectNoLeftovers(path);
    expect(await expectConsistent(path, { [contentSha([small])]: 'old + edit' })).toBe('old + edit');
  });

  it('two concurrent patchers: each edit is applied whole or refused with the lock error', async () => {
    const first: Edit = { offset: 5 * MIB, data: noise(4 * MIB, 21) };
    const second: Edit = { offset: 12 * MIB, data: noise(4 * MIB, 22) };
    const firstPath = writeEdit('concurrent-1.bin', first);
    const secondPath = writeEdit('concurrent-2.bin', second);
    const allowed = {
      [contentSha([first])]: 'first',
      [contentSha([second])]: 'second',
      [contentSha([first, second])]: 'both',
    };
    const path = file('concurrent.gz');
    const seen: string[] = [];
    for (let round = 0; round < 5; round++) {
      copyFileSync(basePath, path);
      const one = startPatch(path, first.offset, firstPath);
      const two = startPatch(path, second.offset, secondPath);
      const [exitOne, exitTwo] = await Promise.all([one.exited, two.exited]);
      const applied: string[] = [];
      for (const [exit, other, name] of [
        [exitOne, two.child, 'first'],
        [exitTwo, one.child, 'second'],
      ] as const) {
        if (exit.code === 0) {
          applied.push(name);
        } else {
          expect(exit.code, exit.stderr).toBe(1);
          expect(exit.stderr).toContain(`another seekz process (pid ${other.pid})`);
        }
      }
      expect(applied.length, 'at least one patcher succeeds').toBeGreaterThan(0);
      expectNoLeftovers(path);
      const outcome = await expectConsistent(path, allowed);
      expect(outcome).toBe(applied.length === 2 ? 'both' : applied[0]);
      seen.push(outcome);
    }
    console.log(`patch-crash: concurrent outcomes ${seen.join(', ')}`);
  });
});

describe('the lock under contention', () => {
  it('two edits of the same file in one process queue, and both apply', async () => {
    const path = file('same-process.gz');
    copyFileSync(basePath, path);
    const first: Edit = { offset: 5 * MIB, data: noise(1, 31) };
    const second: Edit = { offset: 12 * MIB, data: noise(4 * MIB, 32) };
    const results = await Promise.allSettled([
      patchFile(path, [{ offset: first.offset, data: first.data }]),
      patchFile(path, [{ offset: second.offset, data: second.data }]),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled']);
    expectNoLeftovers(path);
    expect(await expectConsistent(path, { [contentSha([first, second])]: 'both' })).toBe('both');
  });

  it('an empty lock file (left by an older version killed mid-create) is taken over once it is old', async () => {
    const path = file('empty-lock.gz');
    copyFileSync(basePath, path);
    writeFileSync(lockPath(path), '');
    const past = new Date(Date.now() - 60_000);
    utimesSync(lockPath(path), past, past);
    const small: Edit = { offset: 6 * MIB, data: noise(100, 33) };
    const result = runCli('seekz', ['patch', path, '--offset', String(small.offset), '--data', writeEdit('empty-lock.bin', small)]);
    expect(result.status, result.stderr).toBe(0);
    expectNoLeftovers(path);
  });

  it("a contender's files left by a process that died are swept, a live one's are kept; a link at the temp journal's name is not written through", () => {
    const path = file('leftovers.gz');
    copyFileSync(basePath, path);
    const dead = spawnSync(process.execPath, ['-e', '']).pid!; // exited: its pid names no process (pids are not reused this soon)
    const lock = lockPath(path);
    const leftovers = [`${lock}.${dead}-zq81x0ab`, `${lock}.stale-${dead}-0h4k2mzz`, `${lock}.${dead}-0123abcd`];
    const live = `${lock}.${process.pid}-livezz00`;
    for (const name of [...leftovers, live]) writeFileSync(name, `${dead}\n`);
    const small: Edit = { offset: 6 * MIB, data: noise(100, 34) };
    let result = runCli('seekz', ['patch', path, '--offset', String(small.offset), '--data', writeEdit('leftovers.bin', small)]);
    expect(result.status, result.stderr).toBe(0);
    expect(leftovers.filter((name) => existsSync(name)), 'files of a dead contender').toEqual([]);
    expect(existsSync(live), 'a live process keeps its file').toBe(true);
    expectNoLeftovers(path);
    // A symbolic link where the temp journal goes (someone else's, in a shared directory) fails the
    // patch; the file it points to is not touched, nor is the file being patched.
    const target = file('not-yours.txt');
    writeFileSync(target, 'keep me');
    symlinkSync(target, tempJournalPath(path));
    const before = readFileSync(path);
    result = runCli('seekz', ['patch', path, '--offset', String(small.offset), '--data', writeEdit('leftovers.bin', small)]);
    if (result.status === 0) expect(existsSync(tempJournalPath(path)), 'recovery removed the link first').toBe(false);
    expect(readFileSync(target, 'utf8')).toBe('keep me');
    if (result.status !== 0) expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('contenders for a stale lock: exactly one holds it at a time', async () => {
    const target = file('stale-race');
    writeFileSync(target, '');
    const lockModule = new URL('../src/edit/lock.ts', import.meta.url).href;
    // Each contender takes the lock, checks for 300 ms that the lock file still names it, releases.
    const script = `
      const { acquireLock } = await import(${JSON.stringify(lockModule)});
      const { readFileSync } = await import('node:fs');
      try {
        const release = await acquireLock(${JSON.stringify(target)});
        let stolen = false;
        for (let i = 0; i < 30; i++) {
          await new Promise((r) => setTimeout(r, 10));
          if (readFileSync(${JSON.stringify(lockPath(target))}, 'utf8').trim() !== String(process.pid)) stolen = true;
        }
        await release();
        console.error(stolen ? 'STOLEN' : 'HELD');
      } catch (error) { console.error(error.code ?? String(error)); }`;
    for (let round = 0; round < 5; round++) {
      writeFileSync(lockPath(target), '999999999\n'); // a pid that does not run
      const contenders = Array.from({ length: 3 }, () => start(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]));
      const outputs = (await Promise.all(contenders.map((contender) => contender.exited))).map((exit) => exit.stderr.trim());
      expect(outputs.filter((output) => output === 'STOLEN'), outputs.join(' ')).toEqual([]);
      expect(outputs.filter((output) => output === 'HELD').length, outputs.join(' ')).toBeGreaterThan(0);
      for (const output of outputs) expect(['HELD', 'PATCH_LOCKED']).toContain(output);
      expect(existsSync(lockPath(target))).toBe(false);
    }
  });
});
