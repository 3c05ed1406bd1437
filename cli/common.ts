import { SeekzError } from '../src/errors.js';
import { removeTempFilesNow } from '../src/io/atomic-file.js';
import { formatSize } from '../src/size.js';

/**
 * Runs a CLI's main: a SeekzError prints its one-line message and exits 1 (2 for usage errors,
 * as gzip and xz do); anything else is a bug and prints its stack. SIGINT, SIGTERM and SIGHUP
 * remove temp files first, so an interrupted write leaves no partial output.
 */
const shutdownHooks: (() => Promise<void>)[] = [];

/**
 * Work that must finish before a signal ends the process (a server closing its socket and
 * flushing writes). While a hook is registered, a signal runs the hooks and exits cleanly.
 */
export function onShutdown(hook: () => Promise<void>): void {
  shutdownHooks.push(hook);
}

export function runCli(main: () => Promise<void>): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      const status = 128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const)[signal];
      if (shutdownHooks.length > 0) {
        const hooks = shutdownHooks.splice(0);
        Promise.allSettled(hooks.map((hook) => hook())).then(() => process.exit(status));
        return;
      }
      removeTempFilesNow();
      process.stderr.write(`\nseekz: interrupted by ${signal}; no output was left behind\n`);
      process.exit(status);
    });
  }
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (error: unknown) => {
      removeTempFilesNow();
      if (error instanceof SeekzError) {
        process.stderr.write(`${error.message}\n`);
        process.exit(error.code === 'BAD_ARGUMENT' || error.code === 'BAD_SIZE' ? 2 : 1);
      }
      const code = (error as NodeJS.ErrnoException).code;
      // The reader went away (`seekz cat | head`): stop quietly, as zcat and xzcat do.
      if (code === 'EPIPE') process.exit(141);
      if (code && (error as NodeJS.ErrnoException).syscall) {
        process.stderr.write(`seekz: ${(error as Error).message}\n`);
        process.exit(1);
      }
      process.stderr.write(`seekz: internal error: ${(error as Error).stack ?? String(error)}\n`);
      process.exit(70);
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
