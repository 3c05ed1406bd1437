/**
 * Faults from outside the file: a `seekz patch` killed with SIGKILL at a random moment, and a
 * full disk under `cat`, `read`, `extract` and `index`.
 *
 * Kill -9: each kill starts from a copy of one partial-deflate .gz, one seekxz --store .xz or one
 * seekzstd --store .zst (the campaign runs all three formats, --kills each) with a stored range, runs
 * `seekz patch` over most of that range, and SIGKILLs it after a delay drawn from the seed:
 * counted from the spawn (spread over a whole run, measured first), or from the moment the lock
 * or the undo journal appears (fs.watch), so that most kills land inside the edit itself. Afterwards every reader must see all-old or
 * all-new, the same for all. The first reader (by seed: `cat`, `read`, `info`, `index`, or a
 * read through `seekz serve --readonly`) meets the file as the kill left it, and must recover the
 * edit first or refuse; then `seekz cat`, `seekz read` of the edited range, and the real tools:
 * `zcat` and `gzip -t`, `xz -dc` and `xz -t`, or `zstd -dc` and `zstd -t`.
 *
 * ENOSPC: output into a tmpfs of a few KiB, by -o and by stdout (mounted when we are root;
 * else only stdout to /dev/full is tried, and the run says so). The verdict must be a clean error, and no output
 * file may be left behind.
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Base } from './bases.js';
import { createRandom, diskLikeContent } from './random.js';
import { nbdRead, startServer } from './nbd.js';
import { distCli, judge, runMeasured, type Outcome, type Verdict } from './run.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

export interface FaultResult {
  command: string;
  verdict: Verdict;
  why: string;
}

/** The formats seekz edits in place, and the real tools that judge each. */
const PATCH_FORMATS = {
  gz: { decompress: ['zcat', []], test: ['gzip', ['-t']], readers: ['cat', 'read', 'info', 'index', 'serve'] },
  // `seekz index` is for gzip: an xz file's first reader is one of the others.
  xz: { decompress: ['xz', ['-dc']], test: ['xz', ['-t']], readers: ['cat', 'read', 'info', 'serve'] },
  zst: { decompress: ['zstd', ['-dc']], test: ['zstd', ['-t']], readers: ['cat', 'read', 'info', 'serve'] },
} as const;
export type PatchFormat = keyof typeof PATCH_FORMATS;
export const PATCH_FORMAT_NAMES = Object.keys(PATCH_FORMATS) as PatchFormat[];

export interface PatchSetup {
  format: PatchFormat;
  dir: string;
  base: string;
  edit: string;
  offset: number;
  length: number;
  old: Uint8Array;
  editBytes: Uint8Array;
  shas: { old: string; new: string };
  /** How long one uninterrupted patch takes, in ms: kills are spread over this. */
  runMs: number;
}

export async function preparePatch(root: string, format: PatchFormat, seed: number, timeoutMs: number): Promise<PatchSetup> {
  const dir = join(root, format);
  mkdirSync(dir, { recursive: true });
  const random = createRandom(seed, -2);
  const old = diskLikeContent(4 * MIB, random);
  const offset = MIB + random.int(64 * KIB);
  const length = 2 * MIB + random.int(256 * KIB);
  const edit = random.bytes(length);
  const next = old.slice();
  next.set(edit, offset);
  writeFileSync(join(dir, 'a.img'), old);
  writeFileSync(join(dir, 'edit.bin'), edit);
  if (format === 'gz') {
    execFileSync(process.execPath, [distCli('partial-deflate'), '-q', '-T', '1', '--chunk-size', '256KiB', 'a.img', 'base.gz', String(512 * KIB), String(3584 * KIB)], { cwd: dir });
  } else if (format === 'xz') {
    execFileSync(process.execPath, [distCli('seekxz'), '-q', '-k', '-T', '1', '--block-size', '256KiB', '--store', `${512 * KIB}:${3584 * KIB}`, 'a.img', '-o', 'base.xz'], { cwd: dir });
  } else {
    execFileSync(process.execPath, [distCli('seekzstd'), '-q', '-T', '1', '--frame-size', '256KiB', '--store', `${512 * KIB}:${3584 * KIB}`, 'a.img', '-o', 'base.zst'], { cwd: dir });
  }
  // One uninterrupted run, to know how long a patch takes and that it works at all.
  copyFileSync(join(dir, `base.${format}`), join(dir, `timing.${format}`));
  const started = Date.now();
  const outcome = await runMeasured(process.execPath, [distCli('seekz'), 'patch', `timing.${format}`, '--offset', String(offset), '--data', 'edit.bin', '-q'], { timeoutMs, cwd: dir, rssFile: join(dir, 'timing.rss') });
  if (outcome.status !== 0) throw new Error(`seekz patch of .${format} failed without a kill: ${outcome.stderr}`);
  return { format, dir, base: join(dir, `base.${format}`), edit: join(dir, 'edit.bin'), offset, length, old, editBytes: edit, shas: { old: sha(old), new: sha(next) }, runMs: Date.now() - started };
}

/** One kill: returns the verdict and whether the kill landed before the patch finished. */
export async function runKill(setup: PatchSetup, seed: number, kill: number, timeoutMs: number): Promise<FaultResult & { landed: boolean; trigger: string; midEdit: boolean }> {
  const random = createRandom(seed, { gz: 1_000_000, xz: 2_000_000, zst: 3_000_000 }[setup.format] + kill);
  const dir = join(setup.dir, `kill-${kill}`);
  const name = `f.${setup.format}`;
  const tools = PATCH_FORMATS[setup.format];
  mkdirSync(dir, { recursive: true });
  try {
    copyFileSync(setup.base, join(dir, name));
    // The moment: a delay from spawn over the whole run, or a delay after the lock or the undo
    // journal appears (most of a run is node starting up; these land in the edit itself).
    // On a quiet machine the lock is held for about 40 ms and the undo journal lives about 15 ms
    // (watched with fs.watch): the delays after those events are drawn over such spans.
    const trigger = random.pick(['spawn', 'lock', 'journal', 'journal']);
    const delay = random.int(trigger === 'spawn' ? Math.ceil(setup.runMs * 1.1) : trigger === 'lock' ? 50 : 15);
    let timer: NodeJS.Timeout | undefined;
    const arm = () => (timer ??= setTimeout(() => child.kill('SIGKILL'), delay));
    const watcher = watch(dir, (_event, changed) => {
      if (trigger === 'lock' && changed === `${name}.seekz-lock`) arm();
      if (trigger === 'journal' && changed?.startsWith(`${name}.seekz-journal`)) arm();
    });
    const child = spawn(process.execPath, [distCli('seekz'), 'patch', name, '--offset', String(setup.offset), '--data', setup.edit, '-q'], { cwd: dir, stdio: 'ignore' });
    if (trigger === 'spawn') arm();
    const landed = await new Promise<boolean>((resolve) => child.on('exit', (code, signal) => resolve(signal === 'SIGKILL')));
    watcher.close();
    const midEdit = existsSync(join(dir, `${name}.seekz-journal`));
    clearTimeout(timer);

    const seekz = (args: string[]) => runMeasured(process.execPath, [distCli('seekz'), ...args], { timeoutMs, cwd: dir, rssFile: join(dir, 'rss') });
    const readArgs = ['read', name, '--offset', String(setup.offset), '--length', String(setup.length)];
    const done = (command: string, verdict: Verdict, why: string) => ({ command: `patch-kill-${setup.format}:${command}`, verdict, why, landed, trigger, midEdit });
    // The first reader meets the file as the kill left it: it must recover the edit or refuse.
    const first = random.pick([...tools.readers]);
    let firstBytes: Uint8Array | undefined; // what `read` or `serve` gave for the edited range
    if (first === 'info' || first === 'index' || first === 'read') {
      const outcome = await seekz(first === 'info' ? ['info', name] : first === 'index' ? ['index', name, '-q', '-f', '-o', 'test-output.idx'] : readArgs);
      const judged = judge(outcome, { check: () => true });
      if (judged.verdict !== 'exact' && judged.verdict !== 'clean-error') return done(first, judged.verdict, judged.why);
      if (outcome.status === 0 && existsSync(join(dir, `${name}.seekz-journal`))) return done(first, 'wrong', `exit 0 with the undo journal of the killed patch still there (no recovery)`);
      if (first === 'read' && outcome.status === 0) firstBytes = outcome.stdout;
    }
    if (first === 'serve') {
      const server = await startServer(join(dir, name), 'serve', dir, timeoutMs).catch((error: Error & { stderr?: string; signal?: string }) => error);
      if (server instanceof Error) {
        const judged = judge({ status: 1, signal: server.signal ?? null, stdout: Buffer.alloc(0), stderr: server.stderr ?? server.message, timedOut: false, peakRss: 0 }, {});
        if (judged.verdict !== 'clean-error') return done('serve', judged.verdict, judged.why);
      } else {
        const bytes = await nbdRead(server, setup.offset, setup.length, timeoutMs);
        server.child.kill('SIGTERM');
        await new Promise((resolve) => (server.exited ? resolve(undefined) : server.child.on('exit', resolve)));
        if (typeof bytes === 'string') return done('serve', server.exited && !bytes.startsWith('error') ? 'crash' : 'clean-error', bytes);
        firstBytes = bytes;
      }
    }
    const cat = await seekz(['cat', name]);
    const read = first === 'read' && firstBytes ? undefined : await seekz(readArgs);
    const zcat = await runMeasured(tools.decompress[0], [...tools.decompress[1], name], { timeoutMs, cwd: dir, rssFile: join(dir, 'rss') });
    const test = await runMeasured(tools.test[0], [...tools.test[1], name], { timeoutMs, cwd: dir, rssFile: join(dir, 'rss') });

    for (const [command, outcome] of [['cat', cat], ['read', read]] as const) {
      const judged = outcome && judge(outcome, { check: () => true });
      if (judged && judged.verdict !== 'exact') return done(command, judged.verdict, judged.why);
    }
    const catSha = sha(cat.stdout);
    const state = catSha === setup.shas.old ? 'old' : catSha === setup.shas.new ? 'new' : undefined;
    if (!state) return done('cat', 'wrong', 'seekz cat gives neither the old nor the new content');
    const wantRead = state === 'old' ? setup.old.subarray(setup.offset, setup.offset + setup.length) : setup.editBytes;
    if (read && Buffer.compare(read.stdout, wantRead) !== 0) return done('read', 'wrong', `seekz read of the edit disagrees with seekz cat (${state})`);
    if (firstBytes && Buffer.compare(firstBytes, wantRead) !== 0) return done(first, 'wrong', `${first} (before any recovery) gave the edited range as neither all-old nor all-new: ${state} is what stayed`);
    if (zcat.status !== 0 || sha(zcat.stdout) !== catSha) return done(tools.decompress[0], 'wrong', `${tools.decompress.flat().join(' ')} exit ${zcat.status}, ${zcat.status === 0 ? 'other content than seekz cat' : zcat.stderr.trim()}`);
    if (test.status !== 0) return done(`${tools.test[0]}-t`, 'wrong', `${tools.test.flat().join(' ')}: ${test.stderr.trim()}`);
    return { command: `patch-kill-${setup.format}`, verdict: 'exact', why: state, landed, trigger, midEdit };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Mounts a tiny tmpfs at `dir`; false when this container does not allow it. */
function mountTinyTmpfs(dir: string): boolean {
  mkdirSync(dir, { recursive: true });
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8k', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function runEnospc(bases: Base[], dir: string, seed: number, timeoutMs: number): Promise<{ results: FaultResult[]; note: string }> {
  const full = join(dir, 'full');
  const mounted = mountTinyTmpfs(full);
  const results: FaultResult[] = [];
  const seekz = distCli('seekz');
  const rssFile = join(dir, 'enospc.rss');
  try {
    // One base per run (by seed) keeps this to a few seconds; other seeds try the others.
    const names = ['ours-stored', 'gzip-6', 'xz-T2'];
    const chosen = names[createRandom(seed, -3).int(names.length)];
    for (const base of bases.filter((file) => file.name === chosen)) {
      const size = String(base.original.length);
      // stdout on a full device: /dev/full answers every write with ENOSPC.
      for (const args of [['cat', base.path], ['read', base.path, '--offset', '0', '--length', size], ['extract', base.path, '--range', `0:${size}`, '-o', '-', '-q']]) {
        const outcome = await runToFd(process.execPath, [seekz, ...args], '/dev/full', timeoutMs, rssFile);
        results.push({ command: `enospc:${args[0]}>/dev/full`, ...fullDiskVerdict(outcome, base.name) });
      }
      if (!mounted) continue;
      // stdout into a file on the full tmpfs: the first writes fit, a later one fails.
      for (const args of [['cat', base.path], ['read', base.path, '--offset', '0', '--length', size]]) {
        const outcome = await runToFd(process.execPath, [seekz, ...args], join(full, 'stdout.bin'), timeoutMs, rssFile);
        rmSync(join(full, 'stdout.bin'), { force: true });
        results.push({ command: `enospc:${args[0]}>tmpfs`, ...fullDiskVerdict(outcome, base.name) });
      }
      const outputs: string[][] = [
        ['read', base.path, '--offset', '0', '--length', size, '-o', join(full, 'out.bin')],
        ['extract', base.path, '--range', `0:${size}`, '-o', join(full, 'out.bin'), '-q'],
      ];
      if (base.format === 'gz') outputs.push(['index', base.path, '-q', '--format', 'gzidx', '--spacing', '32KiB', '-o', join(full, 'out.index')]);
      for (const args of outputs) {
        // Full before the command starts: a small output (an index of one point is 53 bytes)
        // would otherwise fit in the 8 KiB, and exit 0 would be right.
        fillUp(join(full, FILLER));
        const outcome = await runMeasured(process.execPath, [seekz, ...args], { timeoutMs, rssFile });
        const left = readdirSync(full).filter((name) => name !== FILLER);
        const judged = fullDiskVerdict(outcome, base.name);
        results.push({
          command: `enospc:${args[0]} -o tmpfs`,
          ...(judged.verdict === 'clean-error' && left.length > 0 ? { verdict: 'wrong' as Verdict, why: `failed but left ${left.join(', ')}` } : judged),
        });
        for (const name of [...left, FILLER]) rmSync(join(full, name), { force: true });
      }
    }
  } finally {
    if (mounted) execFileSync('umount', [full]);
  }
  return { results, note: mounted ? 'ENOSPC: -o and stdout into an 8 KiB tmpfs, stdout to /dev/full' : 'ENOSPC: mount not permitted here, so only stdout to /dev/full was tried' };
}

/** A write to a full disk must fail: exit 0 is silent loss of data. */
const FILLER = 'filler';

/** Appends to `path` until its file system has no room left (ENOSPC). */
function fillUp(path: string): void {
  const page = Buffer.alloc(4096);
  try {
    for (;;) appendFileSync(path, page);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  }
  // A partial page may still fit: fill it byte by byte.
  try {
    for (;;) appendFileSync(path, page.subarray(0, 1));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  }
}

function fullDiskVerdict(outcome: Outcome, base: string): { verdict: Verdict; why: string } {
  const judged = judge(outcome, { check: () => false });
  return { verdict: judged.verdict, why: `${base}: ${judged.verdict === 'wrong' ? 'exit 0 although the output could not be written' : judged.why}` };
}

/** Like runMeasured, with stdout sent straight to a file (a device such as /dev/full). */
async function runToFd(command: string, args: string[], path: string, timeoutMs: number, rssFile: string): Promise<Outcome> {
  const fd = openSync(path, 'w');
  try {
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, command, ...args], { stdio: ['ignore', fd, 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    let timedOut = false;
    const timer = setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), timeoutMs);
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    return { status, signal: null, stdout: Buffer.alloc(0), stderr, timedOut, peakRss: 0 };
  } finally {
    closeSync(fd);
  }
}

export const enospcAvailable = () => existsSync('/dev/full');
