/**
 * Runs one command and measures it: wall time from spawn to exit, the child's peak RSS and its CPU
 * time. Peak RSS comes from GNU time's %M (getrusage ru_maxrss of the child), CPU time from %U + %S;
 * on a shared machine CPU seconds stay comparable when wall times do not. Without /usr/bin/time,
 * RSS falls back to polling /proc/PID/status VmHWM, which can miss growth in the last poll
 * interval, and CPU time is unknown (NaN).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GNU_TIME = '/usr/bin/time';
const useGnuTime = existsSync(GNU_TIME);
const POLL_MS = 10;

export const rssMethod = useGnuTime ? 'GNU time %M (max RSS of the child)' : `/proc/PID/status VmHWM polled every ${POLL_MS} ms`;

export interface Measurement {
  /** Seconds from spawn to exit. */
  wall: number;
  /** Peak resident set size in bytes. */
  rss: number;
  /** User plus system CPU seconds of the child; NaN without GNU time. */
  cpu: number;
  stderr: string;
}

/** Runs COMMAND ARGS with stdout to a file (or discarded); rejects when it exits non-zero. */
export async function measure(command: string, args: string[], options: { stdout?: string } = {}): Promise<Measurement> {
  const timeFile = join(tmpdir(), `seekz-bench-time-${process.pid}.txt`);
  const stdout = options.stdout === undefined ? 'ignore' : openSync(options.stdout, 'w');
  try {
    const started = process.hrtime.bigint();
    const child = useGnuTime
      ? spawn(GNU_TIME, ['-f', '%M %U %S', '-o', timeFile, command, ...args], { stdio: ['ignore', stdout, 'pipe'] })
      : spawn(command, args, { stdio: ['ignore', stdout, 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr = (stderr + text).slice(-4000)));
    let polledPeak = 0;
    const poll = useGnuTime ? undefined : setInterval(() => (polledPeak = Math.max(polledPeak, highWaterMark(child.pid))), POLL_MS);
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    const wall = Number(process.hrtime.bigint() - started) / 1e9;
    clearInterval(poll);
    if (code !== 0) {
      throw new Error(`bench: '${[command, ...args].join(' ')}' failed (${signal ?? `exit ${code}`}):\n${stderr.trim()}`);
    }
    // GNU time writes "Command exited with …" before the numbers on failure; the last line is ours.
    if (!useGnuTime) return { wall, rss: polledPeak, cpu: NaN, stderr };
    const [kilobytes, user, system] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number) as [number, number, number];
    return { wall, rss: kilobytes * 1024, cpu: user + system, stderr };
  } finally {
    if (typeof stdout === 'number') closeSync(stdout);
    rmSync(timeFile, { force: true });
  }
}

function highWaterMark(pid: number | undefined): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0; // the process has just exited
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Left-aligns the first column and right-aligns the rest. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((_, column) => Math.max(...[header, ...rows].map((row) => row[column]!.length)));
  const line = (row: string[]) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}
