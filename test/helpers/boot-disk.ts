/**
 * The disk image of the end-to-end edit tests (test/e2e-boot-patch.test.ts for gzip,
 * test/e2e-boot-patch-xz.test.ts for xz): a sparse GPT image with an ext4 /boot holding a BLS
 * entry and an ext4 root, made from directories with `mkfs.ext4 -d` (no root needed), and the
 * piecewise file helpers the tests judge with.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { expect } from 'vitest';
import { diskLikeData, findTool, run, runCli, type RunResult } from './tools.js';

export const MIB = 1024 * 1024;
export const DISK_SIZE = 96 * MIB;
const PIECE = 4 * MIB; // comparisons and copies go through buffers of this size, never a whole image
const ROOT_UUID = '6a1f3c2e-9b7d-4e58-a0c4-2f8e1d9b7c35';

const bootEntry = (consoles: string) =>
  [
    'title   Debian GNU/Linux 12 (bookworm)',
    'version 6.1.0-seekz',
    'linux   /vmlinuz-6.1.0-seekz',
    'initrd  /initrd.img-6.1.0-seekz',
    `options root=UUID=${ROOT_UUID} ro ${consoles}`,
    '',
  ].join('\n');
export const OLD_ENTRY = bootEntry('console=ttyS0');
export const NEW_ENTRY = bootEntry('console=ttyS0 console=ttyAMA0 nvme_core.io_timeout=4294967295');
export const ENTRY_PATH = '/loader/entries/linux.conf';

export interface Range {
  start: number;
  end: number;
}

// ---------------------------------------------------------------------------------------------
// files, in pieces

export function readExactly(fd: number, buffer: Buffer, length: number, position: number): Buffer {
  let done = 0;
  while (done < length) {
    const count = readSync(fd, buffer, done, length - done, position + done);
    if (count === 0) throw new Error(`unexpected end of file at ${position + done}`);
    done += count;
  }
  return buffer.subarray(0, length);
}

/** Copies `length` bytes from one file to a position in another (created if missing). */
export function copyRange(from: string, fromOffset: number, to: string, toOffset: number, length: number): void {
  const input = openSync(from, 'r');
  const output = openSync(to, existsSync(to) ? 'r+' : 'w');
  const buffer = Buffer.allocUnsafe(PIECE);
  try {
    for (let done = 0; done < length; ) {
      const piece = readExactly(input, buffer, Math.min(PIECE, length - done), fromOffset + done);
      writeSync(output, piece, 0, piece.length, toOffset + done);
      done += piece.length;
    }
  } finally {
    closeSync(input);
    closeSync(output);
  }
}

/** Compares two byte ranges piece by piece: where they first differ (offset into `a`'s range) and how many bytes differ. */
export function compareRanges(a: string, aOffset: number, b: string, bOffset: number, length: number): { firstDifference: number | undefined; differing: number } {
  const aFd = openSync(a, 'r');
  const bFd = openSync(b, 'r');
  const aBuffer = Buffer.allocUnsafe(PIECE);
  const bBuffer = Buffer.allocUnsafe(PIECE);
  let firstDifference: number | undefined;
  let differing = 0;
  try {
    for (let done = 0; done < length; done += PIECE) {
      const count = Math.min(PIECE, length - done);
      const aPiece = readExactly(aFd, aBuffer, count, aOffset + done);
      const bPiece = readExactly(bFd, bBuffer, count, bOffset + done);
      if (aPiece.equals(bPiece)) continue;
      for (let index = 0; index < count; index++) {
        if (aPiece[index] === bPiece[index]) continue;
        firstDifference ??= done + index;
        differing++;
      }
    }
  } finally {
    closeSync(aFd);
    closeSync(bFd);
  }
  return { firstDifference, differing };
}

export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  const buffer = Buffer.allocUnsafe(PIECE);
  try {
    for (let position = 0; ; ) {
      const count = readSync(fd, buffer, 0, PIECE, position);
      if (count === 0) break;
      hash.update(buffer.subarray(0, count));
      position += count;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

export function writeTree(root: string, files: Record<string, string | Uint8Array>): void {
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), content);
  }
}

/** Compressible text: lines that repeat their shape but not their content. */
export function logLines(count: number, shape: (index: number) => string): string {
  return Array.from({ length: count }, (_, index) => shape(index)).join('\n') + '\n';
}

export type BootTools = Record<'truncate' | 'sfdisk' | 'mkfs' | 'debugfs' | 'e2fsck' | 'python', string>;

export function findBootTools(): BootTools {
  return {
    truncate: findTool('truncate', 'coreutils'),
    sfdisk: findTool('sfdisk', 'fdisk'),
    mkfs: findTool('mkfs.ext4', 'e2fsprogs'),
    debugfs: findTool('debugfs', 'e2fsprogs'),
    e2fsck: findTool('e2fsck', 'e2fsprogs'),
    python: findTool('python3', 'python3'),
  };
}

/** Runs a real tool and fails with its stderr unless it exits 0. */
export function ok(result: RunResult, what: string): RunResult {
  expect(result.status, `${what} failed (exit ${result.status}): ${result.stderr}`).toBe(0);
  return result;
}

/** Builds `disk.img` in `directory`: GPT, 32 MiB ext4 "boot" at 1 MiB holding ENTRY_PATH = OLD_ENTRY, ext4 "root" after it. */
export function buildBootDisk(directory: string, tools: BootTools): { boot: Range; root: Range } {
  const path = (name: string) => join(directory, name);
  // 1. a sparse GPT disk: 32 MiB "boot" at 1 MiB, "root" for the rest
  ok(run(tools.truncate, ['-s', String(DISK_SIZE), path('disk.img')]), 'truncate');
  const script = 'label: gpt\nstart=1MiB, size=32MiB, type=linux, name="boot"\ntype=linux, name="root"\n';
  ok(run(tools.sfdisk, ['-q', path('disk.img')], { input: script }), 'sfdisk');
  const table = JSON.parse(ok(run(tools.sfdisk, ['--json', path('disk.img')]), 'sfdisk --json').stdout.toString('utf8')) as {
    partitiontable: { sectorsize: number; partitions: { node: string; start: number; size: number; name?: string }[] };
  };
  const { sectorsize, partitions } = table.partitiontable;
  const range = (name: string): Range => {
    const found = partitions.find((partition) => partition.name === name);
    if (!found) throw new Error(`sfdisk made no partition named ${name}: ${JSON.stringify(partitions)}`);
    return { start: found.start * sectorsize, end: (found.start + found.size) * sectorsize };
  };
  const boot = range('boot');
  const root = range('root');
  expect(boot).toEqual({ start: MIB, end: 33 * MIB });

  // 2. ext4 file systems made from directories, written into their partitions
  writeTree(path('boot-dir'), {
    'loader/loader.conf': 'default linux.conf\ntimeout 3\n',
    'loader/entries/linux.conf': OLD_ENTRY,
    'vmlinuz-6.1.0-seekz': diskLikeData(3 * MIB, 11),
    'initrd.img-6.1.0-seekz': diskLikeData(5 * MIB, 12),
    'config-6.1.0-seekz': logLines(8000, (index) => `CONFIG_OPTION_${index}=${index % 3 === 0 ? 'm' : 'y'}`),
    'System.map-6.1.0-seekz': logLines(20000, (index) => `ffffffff81${(index * 64).toString(16).padStart(6, '0')} T symbol_${index}`),
  });
  ok(run(tools.mkfs, ['-q', '-F', '-L', 'boot', '-E', 'root_owner=0:0', '-d', path('boot-dir'), path('boot.img'), '32M']), 'mkfs.ext4 (boot)');
  expect(statSync(path('boot.img')).size).toBe(boot.end - boot.start);
  copyRange(path('boot.img'), 0, path('disk.img'), boot.start, boot.end - boot.start);

  writeTree(path('root-dir'), {
    'etc/fstab': `UUID=${ROOT_UUID} / ext4 errors=remount-ro 0 1\nLABEL=boot /boot ext4 defaults 0 2\n`,
    'etc/hostname': 'seekz-e2e\n',
    'var/log/syslog': logLines(60000, (index) => `Jan  1 00:${String(index % 60).padStart(2, '0')}:00 seekz-e2e kernel: [${index}.000000] event ${index * 7919} on cpu${index % 4}`),
    'usr/lib/x86_64-linux-gnu/libexample.so.1': diskLikeData(12 * MIB, 21),
    'home/user/notes.txt': 'nothing to see here\n'.repeat(5000),
  });
  ok(run(tools.truncate, ['-s', String(root.end - root.start), path('root.img')]), 'truncate (root)');
  ok(run(tools.mkfs, ['-q', '-F', '-L', 'root', '-U', ROOT_UUID, '-E', 'root_owner=0:0', '-d', path('root-dir'), path('root.img')]), 'mkfs.ext4 (root)');
  expect(statSync(path('root.img')).size).toBe(root.end - root.start);
  copyRange(path('root.img'), 0, path('disk.img'), root.start, root.end - root.start);
  expect(statSync(path('disk.img')).size).toBe(DISK_SIZE);
  return { boot, root };
}

/** Edits ENTRY_PATH of an ext4 image to NEW_ENTRY with debugfs -w, and checks that it took. */
export function editBootEntry(directory: string, image: string, tools: BootTools): void {
  // debugfs splits its commands on spaces, so the local file is named relative to the directory
  writeFileSync(join(directory, 'linux.conf'), NEW_ENTRY);
  writeFileSync(join(directory, 'debugfs.cmd'), `rm ${ENTRY_PATH}\nwrite linux.conf ${ENTRY_PATH}\n`);
  ok(run(tools.debugfs, ['-w', '-f', 'debugfs.cmd', image], { cwd: directory }), 'debugfs -w');
  // debugfs exits 0 even when a command fails, so the edit is checked by reading it back
  expect(debugfsCat(image, tools)).toBe(NEW_ENTRY);
}

export function debugfsCat(image: string, tools: BootTools): string {
  return ok(run(tools.debugfs, ['-R', `cat ${ENTRY_PATH}`, image]), 'debugfs cat').stdout.toString('utf8');
}

/**
 * The patched image is right: `original` (the disk before the edit) outside [boot.start, boot.end)
 * byte for byte, and inside it the bytes of `editedBoot` (the partition as debugfs left it), which
 * hold the new entry and a clean file system (debugfs cat, e2fsck -n -f on the partition taken
 * out of `image`).
 */
export function expectEditedImage(image: string, original: string, editedBoot: string, boot: Range, tools: BootTools): void {
  const size = statSync(original).size;
  expect(statSync(image).size).toBe(size);
  const check = join(dirname(image), 'boot-check.img');
  copyRange(image, boot.start, check, 0, boot.end - boot.start);
  expect(debugfsCat(check, tools)).toBe(NEW_ENTRY);
  ok(run(tools.e2fsck, ['-n', '-f', check]), 'e2fsck -n -f');
  expect(compareRanges(editedBoot, 0, check, 0, boot.end - boot.start).firstDifference).toBeUndefined();
  expect(compareRanges(original, 0, image, 0, boot.start).firstDifference).toBeUndefined();
  const after = compareRanges(original, boot.end, image, boot.end, size - boot.end);
  expect(after.firstDifference === undefined ? undefined : boot.end + after.firstDifference).toBeUndefined();
}

/**
 * qemu-io arguments that write every `block`-byte block of `editedBoot` that differs from the
 * disk `original` at boot.start, each from a file of its bytes (written into `directory`): the
 * debugfs edit, replayed through an NBD server.
 */
export function qemuIoWrites(directory: string, original: string, editedBoot: string, boot: Range, block = 4096): string[] {
  const commands: string[] = [];
  const fd = openSync(editedBoot, 'r');
  try {
    for (let at = 0; at < boot.end - boot.start; at += block) {
      if (compareRanges(original, boot.start + at, editedBoot, at, block).differing === 0) continue;
      const bytes = readExactly(fd, Buffer.alloc(block), block, at);
      const name = join(directory, `block-${at}.bin`);
      writeFileSync(name, bytes);
      commands.push(`-c 'write -s ${name} ${boot.start + at} ${block}'`);
    }
  } finally {
    closeSync(fd);
  }
  return commands;
}

/** `seekz extract --partition 1` of `compressed` into `output` gives exactly /boot of `original`, with the old entry. */
export function expectBootExtracted(compressed: string, original: string, output: string, boot: Range, tools: BootTools): void {
  ok(runCli('seekz', ['extract', compressed, '--partition', '1', '-o', output]), 'seekz extract');
  expect(statSync(output).size).toBe(boot.end - boot.start);
  expect(compareRanges(original, boot.start, output, 0, boot.end - boot.start).firstDifference).toBeUndefined();
  expect(debugfsCat(output, tools)).toBe(OLD_ENTRY);
}

/**
 * `seekz patch` of bytes in partition 2 (`root`) is refused in one line naming the editable range
 * (/boot), and leaves `compressed` as it was, with no temp or journal files beside it.
 */
export function expectRefusedOutsideBoot(compressed: string, root: Range, boot: Range): void {
  const before = sha256File(compressed);
  const data = join(dirname(compressed), 'kernel-args.bin');
  writeFileSync(data, 'console=ttyAMA0\n');
  const result = runCli('seekz', ['patch', compressed, '--offset', String(root.start + MIB), '--data', data]);
  expect(result.status, result.stderr).toBe(1);
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(result.stderr).toContain(`editable ranges: [${boot.start}, ${boot.end})`);
  expect(sha256File(compressed)).toBe(before);
  const name = basename(compressed);
  expect(readdirSync(dirname(compressed)).filter((entry) => entry.startsWith(`${name}.`))).toEqual([]);
}
