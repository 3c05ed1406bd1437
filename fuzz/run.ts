/**
 * Runs one command the way a user would (a real process, from dist/), with a time limit and a
 * measure of its peak memory, and judges what came out. The five verdicts are the issue's:
 * exact bytes, a clean error, a crash, a hang, or silent wrong data; a run over 1 GiB of RSS is
 * a sixth, bad on its own whatever the bytes.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type Verdict = 'exact' | 'clean-error' | 'crash' | 'hang' | 'wrong' | 'over-rss';
export const VERDICTS: Verdict[] = ['exact', 'clean-error', 'crash', 'hang', 'wrong', 'over-rss'];
export const BAD_VERDICTS: ReadonlySet<Verdict> = new Set(['crash', 'hang', 'wrong', 'over-rss']);
export const RSS_LIMIT = 1 << 30;

/** dist/bin/NAME.js, the command as it ships, next to this file's dist/fuzz/. */
export function distCli(name: 'seekz' | 'partial-deflate' | 'seekxz' | 'seekzstd'): string {
  return fileURLToPath(new URL(`../bin/${name}.js`, import.meta.url));
}

export function distFile(path: string): string {
  return fileURLToPath(new URL(`../${path}`, import.meta.url));
}

export interface Outcome {
  status: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
  /** Peak RSS in bytes, from GNU time's %M (0 when unknown). */
  peakRss: number;
}

/** The largest peak RSS of any command measured in this process, for the report. */
export const largest = { peakRss: 0, command: '' };

/** Output beyond this is cut off: more than any base file holds, so it is wrong anyway. */
const MAX_OUTPUT = 64 << 20;

/**
 * Runs `command args` under /usr/bin/time in its own process group, so a timeout kills the
 * command and everything it started.
 */
export function runMeasured(command: string, args: string[], options: { timeoutMs: number; cwd?: string; rssFile: string; input?: Uint8Array }): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    rmSync(options.rssFile, { force: true });
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', options.rssFile, command, ...args], {
      cwd: options.cwd,
      detached: true,
      stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    let stdoutLength = 0;
    let stderr = '';
    let timedOut = false;
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdoutLength += chunk.length;
      if (stdoutLength <= MAX_OUTPUT) stdout.push(chunk);
      else killGroup();
    });
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.stdin?.on('error', () => {}).end(options.input);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const lines = existsSync(options.rssFile) ? readFileSync(options.rssFile, 'utf8').trim().split('\n') : [];
      const signalLine = lines.find((line) => line.startsWith('Command terminated by signal'));
      const peakKib = Number(lines[lines.length - 1]);
      if (peakKib * 1024 > largest.peakRss) Object.assign(largest, { peakRss: peakKib * 1024, command: [command, ...args].join(' ') });
      resolve({
        status: signalLine ? null : code,
        signal: signalLine ? `SIG${signalLine.split(' ').pop()}` : null,
        stdout: Buffer.concat(stdout),
        stderr,
        timedOut,
        peakRss: Number.isFinite(peakKib) ? peakKib * 1024 : 0,
      });
    });
  });
}

/** Progress and notice lines that are not errors (seekz says when it builds an index in memory). */
const NOTICE = /has no index; building one in memory|has no seekz map; walking|rolled back an interrupted edit|^\s*$/;

export function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((line) => !NOTICE.test(line));
}

/**
 * gzip's warning with its exit status 2: the data is complete and right, and trailing garbage was
 * ignored (gzip -d does the same). Judged as a success: its bytes must be the truth.
 */
export function warnedComplete(outcome: Outcome): boolean {
  const lines = errorLines(outcome.stderr);
  return outcome.status === 2 && lines.length > 0 && lines.every((line) => /decompression OK, trailing garbage ignored/.test(line));
}

/** Signs of a bug rather than a refusal: a stack, an internal error, a native abort. */
const CRASH_TEXT = /internal error|FATAL|\n\s+at .+:\d+|Aborted|core dumped|Segmentation|napi_/;

/**
 * The verdict for a finished command. `expected` is what it must print on success: bytes, or
 * undefined when any success is wrong (the oracle refused the file). `check` judges a success
 * whose output is not the data itself (info, index).
 */
export function judge(outcome: Outcome, expected: { bytes?: Uint8Array; check?: (outcome: Outcome) => boolean }): { verdict: Verdict; why: string } {
  if (outcome.timedOut) return { verdict: 'hang', why: 'timed out' };
  if (outcome.peakRss > RSS_LIMIT) return { verdict: 'over-rss', why: `peak RSS ${Math.round(outcome.peakRss / 2 ** 20)} MiB` };
  const firstError = errorLines(outcome.stderr)[0] ?? '';
  if (outcome.signal) return { verdict: 'crash', why: `killed by ${outcome.signal}` };
  if (CRASH_TEXT.test('\n' + outcome.stderr)) return { verdict: 'crash', why: oneLine(outcome.stderr.match(/.*(internal error|FATAL|Aborted|Segmentation|napi_).*/)?.[0] ?? firstError) };
  if (outcome.status === 70 || (outcome.status ?? 0) >= 128) return { verdict: 'crash', why: `exit ${outcome.status}: ${oneLine(firstError)}` };
  if (outcome.status !== 0 && !warnedComplete(outcome)) {
    const lines = errorLines(outcome.stderr);
    if (lines.length === 0) return { verdict: 'crash', why: `exit ${outcome.status} with no message` };
    if (lines.length > 3) return { verdict: 'crash', why: `exit ${outcome.status} with ${lines.length} lines of stderr: ${oneLine(lines[0]!)}` };
    return { verdict: 'clean-error', why: oneLine(lines[0]!) };
  }
  if (expected.check) return expected.check(outcome) ? { verdict: 'exact', why: '' } : { verdict: 'wrong', why: 'exit 0 with a wrong claim' };
  if (!expected.bytes) return { verdict: 'wrong', why: `exit 0 with ${outcome.stdout.length} bytes where the real tool refuses the file` };
  if (Buffer.compare(outcome.stdout, expected.bytes) === 0) return { verdict: 'exact', why: '' };
  return { verdict: 'wrong', why: `exit 0 with ${describeDifference(outcome.stdout, expected.bytes)}` };
}

export function describeDifference(got: Uint8Array, want: Uint8Array): string {
  let at = 0;
  while (at < got.length && at < want.length && got[at] === want[at]) at++;
  return `${got.length} bytes where ${want.length} are right, first difference at ${at}`;
}

export function oneLine(text: string): string {
  const line = text.trim().split('\n')[0] ?? '';
  return line.length > 160 ? `${line.slice(0, 157)}...` : line;
}
