import { fail, SeekzError } from '../src/errors.js';
import { stopAllWorkers } from '../src/workers/pool.js';
import { removeTempFilesNow } from '../src/io/atomic-file.js';
import { formatSize } from '../src/size.js';

/**
 * Runs a CLI's main: a SeekzError prints its one-line message and exits 1 (2 for usage errors,
 * as gzip and xz do); anything else is a bug and prints its stack.
 *
 * Signals (SIGINT, SIGTERM, SIGHUP) stop the process within a second, with status 128 + the
 * signal's number: temp files go first, then every worker thread is stopped (its running job is
 * rejected at once and its native call given up at the next slice, see workers/pool.ts), so that
 * process.exit has no thread to wait for. From the signal on, whatever main still does is ignored:
 * its results, its errors, its exit. Pinned by test/trust-xz-signals.test.ts.
 */
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
    process.stderr.write(`\n${fail('INTERRUPTED', signal).message}\n`);
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

export function runCli(main: () => Promise<void>): void {
  for (const signal of Object.keys(SIGNAL_NUMBERS) as StopSignal[]) process.on(signal, () => void stopForSignal(signal));
  main().then(
    () => {
      if (!interrupted) exitWhenStopped(Number(process.exitCode ?? 0));
    },
    (error: unknown) => {
      if (interrupted) return;
      removeTempFilesNow();
      if (error instanceof SeekzError) {
        process.stderr.write(`${error.message}\n`);
        return exitWhenStopped(error.code === 'BAD_ARGUMENT' || error.code === 'BAD_SIZE' ? 2 : 1);
      }
      const code = (error as NodeJS.ErrnoException).code;
      // The reader went away (`seekz cat | head`): stop quietly, as zcat and xzcat do.
      if (code === 'EPIPE') return exitWhenStopped(141);
      if (code && (error as NodeJS.ErrnoException).syscall) {
        process.stderr.write(`seekz: ${(error as Error).message}\n`);
        return exitWhenStopped(1);
      }
      process.stderr.write(`seekz: internal error: ${(error as Error).stack ?? String(error)}\n`);
      exitWhenStopped(70);
    },
  );
}

/** gzip/xz-style level flags: `-6` becomes `--level 6` before commander sees it. */
export function expandLevelFlags(argv: string[]): string[] {
  return argv.flatMap((arg) => (/^-[1-9]$/.test(arg) ? ['--level', arg.slice(1)] : [arg]));
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
    throw new SeekzError('BAD_ARGUMENT', `seekz: ${what} must be a whole number from ${min} to ${max}, got '${text}'`);
  }
  return value;
}
