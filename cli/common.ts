import { readFileSync } from 'node:fs';
import { CommanderError, type Command } from 'commander';
import { fail, SeekzError } from '../src/errors.js';
import { stopAllWorkers } from '../src/workers/pool.js';
import { removeTempFilesNow } from '../src/io/atomic-file.js';
import { findPartition } from '../src/disk/partitions.js';
import type { Source } from '../src/source/source.js';
import { formatSize, parseRange } from '../src/size.js';

/**
 * Runs a CLI's main, and is the one place that turns an error into what the user sees, as xz does:
 *
 *   COMMAND: FILE: detail        seekz: disk.img.gz: gzip: member 2 at offset 4096: crc-32 mismatch …
 *
 * COMMAND is the command the user typed (`seekz`, `seekxz`, `partial-deflate`). FILE is the file
 * being worked on (see `workingOn`; `(stdin)` for '-'), or the path a system error names; it is left
 * out for mistakes in the command line itself, which come before any file is touched. The detail is
 * the message from src/errors.ts, which starts with the format (`gzip:`, `xz:`, `index:`, `disk:`)
 * when the format is at fault. A system error reads like strerror(3): `No such file or directory`.
 *
 * Exit status, as xz: 0 success, 1 error (command-line mistakes too, commander's own included), 2 a
 * warning only (gzip's "trailing garbage ignored"), 141 the reader went away (EPIPE), 128 + N a
 * signal. No stack traces, except for a bug (70, "internal error").
 *
 * Signals (SIGINT, SIGTERM, SIGHUP) stop the process within a second, with status 128 + the
 * signal's number: temp files go first, then every worker thread is stopped (its running job is
 * rejected at once and its native call given up at the next slice, see workers/pool.ts), so that
 * process.exit has no thread to wait for. From the signal on, whatever main still does is ignored:
 * its results, its errors, its exit. Pinned by test/trust-xz-signals.test.ts and, for messages and
 * exit statuses, test/cli-manners.test.ts.
 */
let command = 'seekz';
let subject: string | undefined;

/** The file the command works on from now on: errors that follow are about it. */
export function workingOn(file: string | undefined): void {
  subject = file;
}

/** workingOn for a FILE that seekz reads at random offsets: '-' (stdin, often a pipe) cannot be. */
export function workingOnSeekable(file: string): void {
  workingOn(file);
  if (file === '-') throw fail('BAD_ARGUMENT', 'stdin cannot be read at random offsets; give a file or a URL (xz -dc and gzip -dc read stdin)');
}

/** Where libuv's wording differs from strerror(3), which xz and gzip print. */
const STRERROR: Record<string, string> = {
  EISDIR: 'Is a directory',
  EEXIST: 'File exists',
  ELOOP: 'Too many levels of symbolic links',
};

function named(file: string): string {
  return file === '-' ? '(stdin)' : file;
}

/** The one line an error prints, or undefined when it is a bug. */
export function errorLine(error: unknown): string | undefined {
  if (error instanceof SeekzError) {
    if (error.code === 'INTERRUPTED') return `${command}: ${error.message}`;
    return `${command}: ${subject !== undefined ? `${named(subject)}: ` : ''}${error.message}`;
  }
  const { code, syscall, path } = error as NodeJS.ErrnoException;
  if (typeof code === 'string' && syscall) {
    // Node's text is "ENOENT: no such file or directory, open 'x'"; strerror(3) says "No such file or directory".
    const reason = STRERROR[code] ?? (error as Error).message.replace(/^[A-Z0-9_]+: /, '').replace(/, \w+( '.*')?$/, '');
    const file = path ?? subject;
    return `${command}: ${file !== undefined ? `${named(file)}: ` : ''}${reason.charAt(0).toUpperCase()}${reason.slice(1)}`;
  }
  return undefined;
}

/** A warning about `file` (the current one by default): exit status 2 unless an error gave 1, as xz and gzip. */
export function warn(error: SeekzError, file = subject): void {
  const current = subject;
  subject = file;
  process.stderr.write(`${errorLine(error)}\n`);
  subject = current;
  if (!process.exitCode) process.exitCode = 2;
}

/** Reports an error of one file among several and goes on (xz's way with many files); the exit status becomes 1. */
export function reportAndContinue(error: unknown): void {
  const line = errorLine(error);
  if (line === undefined || (error as NodeJS.ErrnoException).code === 'EPIPE') throw error;
  process.stderr.write(`${line}\n`);
  process.exitCode = 1;
}

const shutdownHooks: (() => Promise<void>)[] = [];

/** How long a signal waits for worker threads before the process kills itself with the signal. */
const WORKER_STOP_LIMIT_MS = 800;

/**
 * Work that must finish before a signal ends the process (a server closing its socket and
 * flushing writes). While a hook is registered, a signal runs the hooks and exits cleanly.
 */
export function onShutdown(hook: () => Promise<void>): void {
  shutdownHooks.push(hook);
}

const SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
type StopSignal = keyof typeof SIGNAL_NUMBERS;

let interrupted = false;

/** Ends the process by the signal itself (default action): no exit handlers, no thread joins. */
function dieBy(signal: StopSignal): void {
  process.removeAllListeners(signal);
  process.kill(process.pid, signal);
}

async function stopForSignal(signal: StopSignal): Promise<void> {
  if (interrupted) return dieBy(signal); // a second Ctrl-C does not wait for anything
  interrupted = true;
  const status = 128 + SIGNAL_NUMBERS[signal];
  const hooks = shutdownHooks.splice(0);
  if (hooks.length > 0) {
    await Promise.allSettled(hooks.map((hook) => hook()));
  } else {
    removeTempFilesNow();
    process.stderr.write(`\n${errorLine(fail('INTERRUPTED', signal))}\n`);
  }
  let timer: NodeJS.Timeout | undefined;
  const stopped = await Promise.race([
    stopAllWorkers().then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), WORKER_STOP_LIMIT_MS))),
  ]);
  clearTimeout(timer);
  removeTempFilesNow(); // one created while the workers stopped
  // A thread still inside a native call would make process.exit wait for it, then abort.
  if (!stopped) return dieBy(signal);
  process.exit(status);
}

/** Exits once no worker thread is left running (process.exit would otherwise join one inside liblzma). */
function exitWhenStopped(status: number): void {
  void stopAllWorkers().then(() => {
    if (!interrupted) process.exit(status);
  });
}

/** The version in package.json, read only when asked for (two levels up from dist/bin/, the bundle, as from dist/cli/). */
function version(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/**
 * Gives a commander program the manners above: `-V`/`--version`, its errors in our one-line form,
 * and its exits through runCli (status 1 for a usage error, 0 for --help and --version).
 * Call it before adding subcommands, which inherit it.
 */
export function shellManners(program: Command): Command {
  // Liberal on purpose: -V may sit in a group (`seekxz -dV`); a false hit only costs reading package.json.
  const versionWanted = process.argv.some((arg) => arg === '--version' || /^-[^-]*V/.test(arg));
  return program
    .version(versionWanted ? `${program.name()} (seekz) ${version()}` : '', '-V, --version', 'print the version and exit')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`${command}: ${text.replace(/^error: /, '')}`) });
}

/**
 * `--version -v` (or `-Vv`): the version, then which engine each codec runs on, native addon or
 * pure-Node fallback, and why (as xz's `--version` names its liblzma). Loads the engines only then.
 */
async function printVersionAndEngines(): Promise<void> {
  const [{ describeEngines }, { zlibEngine }, { nativeZstd }] = await Promise.all([
    import('../src/native/xz-engine.js'),
    import('../src/native/zlib.js'),
    import('../src/native/zstd.js'),
  ]);
  const zstd = nativeZstd();
  const zstdEngine = zstd ? `native addon seekz_zstd (libzstd ${zstdVersion(zstd.versionNumber())})` : `fzstd, decoding only (${process.env.SEEKZ_NATIVE === '0' ? 'SEEKZ_NATIVE=0' : 'addon not built'})`;
  process.stdout.write(`${command} (seekz) ${version()}\nxz: ${describeEngines().xz}\ngzip index: ${zlibEngine()}\nzstd: ${zstdEngine}\n`);
}

/** libzstd's ZSTD_versionNumber(): major × 10000 + minor × 100 + release. */
function zstdVersion(number: number): string {
  return `${Math.floor(number / 10000)}.${Math.floor(number / 100) % 100}.${number % 100}`;
}

function versionWithEnginesWanted(argv: string[]): boolean {
  const flags = argv.slice(2).filter((arg) => /^-[a-zA-Z]+$/.test(arg) || arg.startsWith('--'));
  const has = (short: string, long: string) => flags.includes(long) || flags.some((flag) => !flag.startsWith('--') && flag.includes(short));
  return has('V', '--version') && has('v', '--verbose');
}

export function runCli(name: string, main: () => Promise<void>): void {
  command = name;
  for (const signal of Object.keys(SIGNAL_NUMBERS) as StopSignal[]) process.on(signal, () => void stopForSignal(signal));
  (versionWithEnginesWanted(process.argv) ? printVersionAndEngines : main)().then(
    () => {
      if (!interrupted) exitWhenStopped(Number(process.exitCode ?? 0));
    },
    (error: unknown) => {
      if (interrupted) return;
      removeTempFilesNow();
      if (error instanceof CommanderError) return exitWhenStopped(error.exitCode === 0 ? 0 : 1); // commander printed it
      // The reader went away (`seekz cat | head`): stop quietly, as zcat and xzcat do.
      if ((error as NodeJS.ErrnoException).code === 'EPIPE') return exitWhenStopped(141);
      const line = errorLine(error);
      if (line !== undefined) {
        process.stderr.write(`${line}\n`);
        return exitWhenStopped(1);
      }
      process.stderr.write(`${command}: internal error: ${(error as Error).stack ?? String(error)}\n`);
      exitWhenStopped(70);
    },
  );
}

/**
 * xz/gzip-style level flags: `-6` becomes `--level 6`, `-9e` `--level 9 -e`, `-10` `--level 10`
 * (refused by the level's range check, not taken for a file). A value of an option that takes one
 * is left alone: in `-T -1`, `-1` belongs to -T.
 */
export function expandLevelFlags(argv: string[], takesValue: string[]): string[] {
  return argv.flatMap((arg, at) => {
    const match = /^-(\d+)([a-zA-Z]*)$/.exec(arg);
    if (!match || (at > 0 && takesValue.includes(argv[at - 1]!))) return [arg];
    return ['--level', match[1]!, ...(match[2] ? [`-${match[2]}`] : [])];
  });
}

/** Refuses, as xz and gzip do, to write compressed data where a person would see it. */
export function refuseTerminalOutput(force: boolean | undefined): void {
  if (!force && process.stdout.isTTY) throw fail('TERMINAL', 'written to');
}

/**
 * A progress line on stderr when it is a terminal: bytes, rate and ETA, redrawn at most 4 times
 * a second. Returns the update function and a finish function that clears the line.
 */
export function progressLine(total: number | undefined, enabled: boolean) {
  const started = Date.now();
  let lastDraw = 0;
  const active = enabled && process.stderr.isTTY === true;
  const update = (done: number) => {
    if (!active) return;
    const now = Date.now();
    if (now - lastDraw < 250) return;
    lastDraw = now;
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    let line = `${formatSize(done)}`;
    if (total) line += ` / ${formatSize(total)} (${((100 * done) / total).toFixed(1)}%)`;
    line += `  ${formatSize(rate)}/s`;
    if (total && rate > 0) line += `  ETA ${formatDuration((total - done) / rate)}`;
    process.stderr.write(`\r${line}\x1b[K`);
  };
  const finish = () => {
    if (active) process.stderr.write('\r\x1b[K');
  };
  return { update, finish };
}

function formatDuration(seconds: number): string {
  const whole = Math.round(seconds);
  const minutes = Math.floor(whole / 60);
  return minutes > 0 ? `${minutes}m${String(whole % 60).padStart(2, '0')}s` : `${whole}s`;
}

export function parseInteger(text: string, what: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw fail('BAD_ARGUMENT', `${what} must be a whole number from ${min} to ${max}, got '${text}'`);
  }
  return value;
}

/** `--store START:END` and `--store-partition N`, both repeatable (seekxz, seekzstd). */
export function storeOptions(program: Command, unit: string): Command {
  const collect = (value: string, all: string[]) => [...all, value];
  return program
    .option('--store <start:end>', `write this uncompressed range as ${unit}, editable in place by seekz patch (repeatable)`, collect, [] as string[])
    .option('--store-partition <n>', "store partition N of the input's MBR or GPT (repeatable)", collect, [] as string[]);
}

/** The ranges `--store` and `--store-partition` name; a partition is looked up in the input's table. */
export async function storedRangesOf(options: { store: string[]; storePartition: string[] }, source: Source | undefined): Promise<{ start: number; end: number }[]> {
  const stored = options.store.map(parseRange);
  if (!source && options.storePartition.length > 0) throw fail('BAD_ARGUMENT', '--store-partition needs a file input, not stdin');
  for (const text of options.storePartition) {
    const partition = await findPartition(source!, parseInteger(text, 'partition number', 1, 65536));
    stored.push({ start: partition.start, end: partition.start + partition.size });
  }
  return stored;
}
