import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Source } from '../../src/source/source.js';

export type CliName = 'seekz' | 'partial-deflate' | 'seekxz' | 'seekzstd';

/** Absolute path of a command as it ships: the bundle in dist/bin, which vitest's global setup builds from the sources first. */
export function cliPath(name: CliName): string {
  return fileURLToPath(new URL(`../../dist/bin/${name}.js`, import.meta.url));
}

/**
 * Checks that a real tool is installed. A missing tool is a failure that names the Debian
 * package, never a skip: the interoperability tests are the point.
 */
export function requireTool(command: string, debianPackage: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  if (found.status !== 0) throw new Error(`${command} is not installed: apt-get install -y ${debianPackage}`);
}

export interface RunResult {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a command to completion; large outputs are allowed. */
export function run(command: string, args: string[], options: { input?: Uint8Array | string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): RunResult {
  const result: SpawnSyncReturns<Buffer> = spawnSync(command, args, {
    input: options.input,
    cwd: options.cwd,
    env: options.env,
    maxBuffer: 1 << 30,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

/** Runs one of our CLIs with the current node. */
export function runCli(name: CliName, args: string[], options: { input?: Uint8Array | string; cwd?: string } = {}): RunResult {
  return run(process.execPath, [cliPath(name), ...args], options);
}

/** A fresh temp directory and its cleanup. */
export function tempDir(prefix = 'seekz-test-'): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Python from Debian (/usr/bin/python3), where Debian's modules (indexed_gzip, nbd) load. */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/**
 * Deterministic test data that looks like a disk: text, binary-ish runs, zero runs.
 * xorshift32-driven, so the same seed always gives the same bytes.
 */
export function diskLikeData(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  const words = ['root', 'boot', 'kernel', 'initrd', 'console=ttyS0', 'UUID=', 'options', 'linux', 'ext4', '/usr/lib', '\n', ' '];
  let at = 0;
  while (at < length) {
    const kind = next() % 4;
    const run = Math.min(length - at, 512 + (next() % 16384));
    if (kind === 0) {
      at += run; // zeros
    } else if (kind === 1) {
      for (let index = 0; index < run; index++) out[at + index] = next() & 0xff; // incompressible
      at += run;
    } else {
      let index = 0;
      while (index < run) {
        const word = words[next() % words.length]!;
        for (let char = 0; char < word.length && index < run; char++, index++) out[at + index] = word.charCodeAt(char);
      }
      at += run;
    }
  }
  return out;
}

/**
 * The absolute path of a real tool, or a failure naming its Debian package. Unlike requireTool it
 * also looks in the sbin directories: sfdisk, mkfs.ext4, debugfs and e2fsck live there, and
 * Debian leaves them off a normal user's PATH although they run fine on image files without root.
 */
export function findTool(command: string, debianPackage: string): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  const found = dirs.filter(Boolean).map((dir) => join(dir, command)).find((path) => existsSync(path));
  if (!found) throw new Error(`${command} is not installed: apt-get install -y ${debianPackage}`);
  return found;
}

/** Hex SHA-256, for comparing large outputs without printing them. */
export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Wraps a Source and records every read, to test the I/O plan of a reader: which byte ranges it
 * fetches, not only what it returns.
 */
export function countingSource(inner: Source): { source: Source; reads: [offset: number, length: number][]; bytesRead: () => number } {
  const reads: [number, number][] = [];
  const source: Source = {
    size: inner.size,
    read(offset, length) {
      reads.push([offset, length]);
      return inner.read(offset, length);
    },
  };
  return { source, reads, bytesRead: () => reads.reduce((sum, [, length]) => sum + length, 0) };
}

export interface XzListBlock {
  stream: number;
  number: number;
  compressedOffset: number;
  uncompressedOffset: number;
  totalSize: number;
  uncompressedSize: number;
  check: string;
  headerSize: number;
  /** 'c' when the header records the compressed size, 'u' the uncompressed size: 'cu', '-u', '--'. */
  sizeFlags: string;
}

/**
 * What `xz --robot --list -vv` says about a file (the column layout is in xz(1), "Robot mode"):
 * the xz tool's own view of streams and blocks, to hold our writer and reader against.
 */
export function xzList(path: string): { blocks: XzListBlock[]; streams: number; padding: number; checks: string; sizesInHeaders: boolean } {
  const result = run('xz', ['--robot', '--list', '-vv', path]);
  if (result.status !== 0) throw new Error(`xz --list ${path} failed: ${result.stderr}`);
  const rows = result.stdout.toString().trim().split('\n').map((line) => line.split('\t'));
  const file = rows.find((row) => row[0] === 'file')!;
  const summary = rows.find((row) => row[0] === 'summary')!;
  const blocks = rows
    .filter((row) => row[0] === 'block')
    .map((row) => ({
      stream: Number(row[1]),
      number: Number(row[3]),
      compressedOffset: Number(row[4]),
      uncompressedOffset: Number(row[5]),
      totalSize: Number(row[6]),
      uncompressedSize: Number(row[7]),
      check: row[9]!,
      headerSize: Number(row[11]),
      sizeFlags: row[12]!,
    }));
  return { blocks, streams: Number(file[1]), padding: Number(file[7]), checks: file[6]!, sizesInHeaders: summary[2] === 'yes' };
}

/**
 * Runs a command without blocking the event loop, for tools that must run side by side (several
 * NBD clients at once). Same result shape as `run`.
 */
export function runAsync(command: string, args: string[], options: { cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString() }));
  });
}

/** Peak resident memory of a live process, from /proc/PID/status (VmHWM), in bytes. */
export function peakRss(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((row) => row.startsWith('VmHWM:'));
  if (!line) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(/(\d+)\s*kB/.exec(line)![1]) * 1024;
}

/** Deterministic incompressible bytes (xorshift32), so a failing run can be reproduced. */
export function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < length; index++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[index] = state & 0xff;
  }
  return out;
}
