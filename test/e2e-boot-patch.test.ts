/**
 * End to end, the loop seekz exists for: a GPT disk image whose ext4 /boot holds a BLS entry is
 * compressed with partial-deflate (partition 1 stored), the partition is extracted, edited with
 * debugfs, and patched back in place. Every verdict comes from the real tools (sfdisk, gzip, pigz,
 * Python's gzip, debugfs, e2fsck), never from seekz reading its own output. No root is needed:
 * the file systems are made from directories with `mkfs.ext4 -d` and edited with debugfs.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, diskLikeData, findTool, run, runCli, tempDir, type RunResult } from './helpers/tools.js';

const MIB = 1024 * 1024;
const DISK_SIZE = 96 * MIB;
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
const OLD_ENTRY = bootEntry('console=ttyS0');
const NEW_ENTRY = bootEntry('console=ttyS0 console=ttyAMA0 nvme_core.io_timeout=4294967295');
const ENTRY_PATH = '/loader/entries/linux.conf';

interface Range {
  start: number;
  end: number;
}

// ---------------------------------------------------------------------------------------------
// files, in pieces

function readExactly(fd: number, buffer: Buffer, length: number, position: number): Buffer {
  let done = 0;
  while (done < length) {
    const count = readSync(fd, buffer, done, length - done, position + done);
    if (count === 0) throw new Error(`unexpected end of file at ${position + done}`);
    done += count;
  }
  return buffer.subarray(0, length);
}

/** Copies `length` bytes from one file to a position in another (created if missing). */
function copyRange(from: string, fromOffset: number, to: string, toOffset: number, length: number): void {
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
function compareRanges(a: string, aOffset: number, b: string, bOffset: number, length: number): { firstDifference: number | undefined; differing: number } {
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

function sha256File(path: string): string {
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

function writeTree(root: string, files: Record<string, string | Uint8Array>): void {
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, name)), { recursive: true });
    writeFileSync(join(root, name), content);
  }
}

/** Compressible text: lines that repeat their shape but not their content. */
function logLines(count: number, shape: (index: number) => string): string {
  return Array.from({ length: count }, (_, index) => shape(index)).join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------

describe('boot partition: compress, extract, edit with debugfs, patch back in place', { timeout: 180_000 }, () => {
  let dir: { path: string; remove: () => void } | undefined;
  const tools = {} as Record<'truncate' | 'sfdisk' | 'mkfs' | 'debugfs' | 'e2fsck' | 'gzip' | 'zcat' | 'pigz' | 'python', string>;
  const path = (name: string) => join(dir!.path, name);
  let boot: Range;
  let root: Range;

  /** Runs a real tool and fails with its stderr unless it exits 0. */
  function ok(result: RunResult, what: string): RunResult {
    expect(result.status, `${what} failed (exit ${result.status}): ${result.stderr}`).toBe(0);
    return result;
  }

  const debugfsCat = (image: string) => ok(run(tools.debugfs, ['-R', `cat ${ENTRY_PATH}`, image]), 'debugfs cat').stdout.toString('utf8');

  /** sha256 of the decompressed data, as Python's gzip module sees it (it checks CRC-32 and ISIZE too). */
  function pythonSha256(gz: string): string {
    const script = [
      'import gzip, hashlib, sys',
      'h = hashlib.sha256()',
      'with gzip.open(sys.argv[1]) as f:',
      '    for piece in iter(lambda: f.read(1 << 20), b""): h.update(piece)',
      'print(h.hexdigest())',
    ].join('\n');
    return ok(run(tools.python, ['-c', script, gz]), "python3's gzip").stdout.toString('utf8').trim();
  }

  /** gzip -t, pigz -t and Python's gzip all accept the file, and Python's bytes hash to `sha256`. */
  function expectStandardGzip(gz: string, sha256: string): void {
    ok(run(tools.gzip, ['-t', gz]), 'gzip -t');
    ok(run(tools.pigz, ['-t', gz]), 'pigz -t');
    expect(pythonSha256(gz)).toBe(sha256);
  }

  beforeAll(() => {
    tools.truncate = findTool('truncate', 'coreutils');
    tools.sfdisk = findTool('sfdisk', 'fdisk');
    tools.mkfs = findTool('mkfs.ext4', 'e2fsprogs');
    tools.debugfs = findTool('debugfs', 'e2fsprogs');
    tools.e2fsck = findTool('e2fsck', 'e2fsprogs');
    tools.gzip = findTool('gzip', 'gzip');
    tools.zcat = findTool('zcat', 'gzip');
    tools.pigz = findTool('pigz', 'pigz');
    tools.python = findTool('python3', 'python3');
    for (const cli of ['seekz', 'partial-deflate'] as const) {
      if (!existsSync(cliPath(cli))) throw new Error(`${cliPath(cli)} is missing; build first: npx tsc -p tsconfig.json`);
    }
    dir = tempDir('seekz-e2e-boot-');

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
    boot = range('boot');
    root = range('root');
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
  }, 180_000);

  afterAll(() => dir?.remove());

  it('partial-deflate --store-partition 1 writes a gzip that gzip, pigz and Python read back exactly', () => {
    ok(runCli('partial-deflate', ['--store-partition', '1', path('disk.img'), path('disk.img.gz')]), 'partial-deflate');
    expectStandardGzip(path('disk.img.gz'), sha256File(path('disk.img')));
  });

  it('seekz info lists partition 1, as sfdisk reports it, as the one editable range', () => {
    const info = ok(runCli('seekz', ['info', path('disk.img.gz')]), 'seekz info').stdout.toString('utf8');
    expect(info).toMatch(/^editable: .*$/m);
    expect(/^editable: (.*)$/m.exec(info)![1]).toBe(`[${boot.start}, ${boot.end})`);
  });

  it('seekz extract --partition 1 gives the bytes of partition 1', () => {
    ok(runCli('seekz', ['extract', path('disk.img.gz'), '--partition', '1', '-o', path('boot-out.img')]), 'seekz extract');
    expect(statSync(path('boot-out.img')).size).toBe(boot.end - boot.start);
    expect(compareRanges(path('disk.img'), boot.start, path('boot-out.img'), 0, boot.end - boot.start).firstDifference).toBeUndefined();
    expect(debugfsCat(path('boot-out.img'))).toBe(OLD_ENTRY);
  });

  it('seekz patch --from writes a debugfs edit back, reading only the stored partition', () => {
    // debugfs exits 0 even when a command fails, so the edit is checked by reading it back
    writeFileSync(path('linux.conf'), NEW_ENTRY);
    // debugfs splits its commands on spaces, so the local file is named relative to the temp dir
    writeFileSync(path('debugfs.cmd'), `rm ${ENTRY_PATH}\nwrite linux.conf ${ENTRY_PATH}\n`);
    ok(run(tools.debugfs, ['-w', '-f', 'debugfs.cmd', 'boot-out.img'], { cwd: dir!.path }), 'debugfs -w');
    expect(debugfsCat(path('boot-out.img'))).toBe(NEW_ENTRY);
    const changed = compareRanges(path('disk.img'), boot.start, path('boot-out.img'), 0, boot.end - boot.start).differing;
    expect(changed).toBeGreaterThan(0);

    const patch = ok(runCli('seekz', ['patch', path('disk.img.gz'), '--from', path('boot-out.img'), '--partition', '1', '-v']), 'seekz patch');
    const report = /wrote (\d+) bytes, read (\d+) bytes \(.*\) of the file/.exec(patch.stderr);
    expect(report, `no "wrote N bytes, read N bytes (…) of the file" in: ${patch.stderr}`).not.toBeNull();
    const written = Number(report![1]);
    const read = Number(report![2]);

    // Only the differing bytes (with short gaps folded in) are written.
    expect(written).toBeGreaterThanOrEqual(changed);
    expect(written).toBeLessThan(64 * 1024);
    // Comparing needs the old bytes of the stored partition; the compressed rest of the file must
    // not be read. Reads beyond the partition (one header fetch with the map, the old bytes of the
    // changed runs) must stay small against the compressed part, made big enough to mean something.
    const stored = boot.end - boot.start;
    const compressedPart = statSync(path('disk.img.gz')).size - stored;
    expect(compressedPart).toBeGreaterThan(2 * MIB);
    expect(read - stored, `read ${read} bytes with ${stored} bytes stored and ${compressedPart} compressed`).toBeLessThan(256 * 1024);
  });

  it('the patched file is standard gzip holding the edit, and nothing outside partition 1 changed', () => {
    ok(run(tools.gzip, ['-t', path('disk.img.gz')]), 'gzip -t');
    const output = openSync(path('disk2.img'), 'w');
    try {
      const zcat = spawnSync(tools.zcat, [path('disk.img.gz')], { stdio: ['ignore', output, 'pipe'], encoding: 'utf8' });
      expect(zcat.status, `zcat: ${zcat.stderr}`).toBe(0);
    } finally {
      closeSync(output);
    }
    expect(statSync(path('disk2.img')).size).toBe(DISK_SIZE);

    copyRange(path('disk2.img'), boot.start, path('boot-patched.img'), 0, boot.end - boot.start);
    expect(debugfsCat(path('boot-patched.img'))).toBe(NEW_ENTRY);
    ok(run(tools.e2fsck, ['-n', '-f', path('boot-patched.img')]), 'e2fsck -n -f');
    expect(compareRanges(path('boot-out.img'), 0, path('boot-patched.img'), 0, boot.end - boot.start).firstDifference).toBeUndefined();

    expect(compareRanges(path('disk.img'), 0, path('disk2.img'), 0, boot.start).firstDifference).toBeUndefined();
    const after = compareRanges(path('disk.img'), boot.end, path('disk2.img'), boot.end, DISK_SIZE - boot.end);
    expect(after.firstDifference === undefined ? undefined : boot.end + after.firstDifference).toBeUndefined();

    expectStandardGzip(path('disk.img.gz'), sha256File(path('disk2.img')));
  });

  it('refuses an edit inside partition 2, naming the editable range, and leaves the file untouched', () => {
    const before = sha256File(path('disk.img.gz'));
    writeFileSync(path('kernel-args.bin'), 'console=ttyAMA0\n');
    const offset = root.start + MIB;
    const result = runCli('seekz', ['patch', path('disk.img.gz'), '--offset', String(offset), '--data', path('kernel-args.bin')]);
    expect(result.status, result.stderr).toBe(1);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/editable/);
    expect(result.stderr).toContain(`[${boot.start}, ${boot.end})`);
    expect(sha256File(path('disk.img.gz'))).toBe(before);
    expect(readdirSync(dir!.path).filter((name) => name.startsWith('disk.img.gz.'))).toEqual([]);
  });
});
