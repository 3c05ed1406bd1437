import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of a built CLI: tests run after `npm run build`. */
export function cliPath(name: 'seekz' | 'partial-deflate'): string {
  return fileURLToPath(new URL(`../../dist/cli/${name}.js`, import.meta.url));
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
export function run(command: string, args: string[], options: { input?: Uint8Array | string; cwd?: string } = {}): RunResult {
  const result: SpawnSyncReturns<Buffer> = spawnSync(command, args, {
    input: options.input,
    cwd: options.cwd,
    maxBuffer: 1 << 30,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

/** Runs one of our CLIs with the current node. */
export function runCli(name: 'seekz' | 'partial-deflate', args: string[], options: { input?: Uint8Array | string; cwd?: string } = {}): RunResult {
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
