/**
 * End to end on .xz, the same loop as test/e2e-boot-patch.test.ts for gzip: a GPT disk image
 * whose ext4 /boot holds a BLS entry is compressed with seekxz --store-partition 1, the partition
 * is extracted, edited with debugfs, and patched back in place; then the same edit goes in through
 * `seekz serve` with qemu-io. Every verdict comes from the real tools (xz -t, xz --list, xz -dc,
 * Python's lzma, nbdkit's xz filter, debugfs, e2fsck), never from seekz reading its own output.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildBootDisk,
  compareRanges,
  editBootEntry,
  expectBootExtracted,
  expectEditedImage,
  expectRefusedOutsideBoot,
  findBootTools,
  MIB,
  ok,
  qemuIoWrites,
  sha256File,
  type BootTools,
  type Range,
} from './helpers/boot-disk.js';
import { cliPath, findTool, run, runCli, SYSTEM_PYTHON, tempDir } from './helpers/tools.js';

describe('xz boot partition: seekxz --store-partition, extract, edit with debugfs, patch back in place', { timeout: 240_000 }, () => {
  let dir: { path: string; remove: () => void } | undefined;
  const tools = {} as BootTools & Record<'xz' | 'nbdkit' | 'qemuIo', string>;
  const path = (name: string) => join(dir!.path, name);
  let boot: Range;
  let root: Range;

  /** sha256 of the decompressed data as Python's lzma module reads it (it checks every block's check). */
  function pythonSha256(xzFile: string): string {
    const script = [
      'import lzma, hashlib, sys',
      'h = hashlib.sha256()',
      'with lzma.open(sys.argv[1]) as f:',
      '    for piece in iter(lambda: f.read(1 << 20), b""): h.update(piece)',
      'print(h.hexdigest())',
    ].join('\n');
    return ok(run(SYSTEM_PYTHON, ['-c', script, xzFile]), "python3's lzma").stdout.toString('utf8').trim();
  }

  /** xz -dc into a file: the independent oracle of what the .xz holds. */
  function xzDecompress(xzFile: string, output: string): void {
    const fd = openSync(output, 'w');
    try {
      const xz = spawnSync(tools.xz, ['-dc', xzFile], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
      expect(xz.status, `xz -dc: ${xz.stderr}`).toBe(0);
    } finally {
      closeSync(fd);
    }
  }

  /** What nbdkit's xz filter serves, copied out with nbdcopy. */
  function nbdkitCopy(xzFile: string, output: string): void {
    ok(run(tools.nbdkit, ['-U', '-', '--filter=xz', 'file', xzFile, '--run', `nbdcopy "$uri" '${output}'`]), 'nbdkit --filter=xz');
  }

  /** The patched image is right: the new entry, a clean file system, and nothing changed outside /boot. */
  const expectEdited = (image: string) => expectEditedImage(image, path('disk.img'), path('boot-out.img'), boot, tools);

  beforeAll(() => {
    Object.assign(tools, findBootTools());
    tools.xz = findTool('xz', 'xz-utils');
    tools.nbdkit = findTool('nbdkit', 'nbdkit');
    tools.qemuIo = findTool('qemu-io', 'qemu-utils');
    findTool('nbdcopy', 'libnbd-bin');
    for (const cli of ['seekz', 'seekxz'] as const) {
      if (!existsSync(cliPath(cli))) throw new Error(`${cliPath(cli)} is missing; build first: npx tsc -p tsconfig.json`);
    }
    dir = tempDir('seekz-e2e-boot-xz-');
    ({ boot, root } = buildBootDisk(dir.path, tools));
  }, 180_000);

  afterAll(() => dir?.remove());

  it('seekxz --store-partition 1 writes an .xz that xz, Python and nbdkit read back exactly', () => {
    ok(runCli('seekxz', ['-k', '-q', '--store-partition', '1', path('disk.img')]), 'seekxz');
    copyFileSync(path('disk.img.xz'), path('serve.img.xz')); // for the edit through the server
    ok(run(tools.xz, ['-t', path('disk.img.xz')]), 'xz -t');
    const list = ok(run(tools.xz, ['--robot', '--list', '-vv', path('disk.img.xz')]), 'xz --list').stdout.toString('utf8');
    // Block lines (xz --robot): "block", stream, block in stream, block, compressed offset, uncompressed offset, ...
    const starts = list.split('\n').filter((line) => line.startsWith('block\t')).map((line) => Number(line.split('\t')[5]));
    const inBoot = starts.filter((start) => start >= boot.start && start < boot.end);
    // 1 MiB stored blocks, aligned to the partition's edges
    expect(inBoot).toEqual(Array.from({ length: (boot.end - boot.start) / MIB }, (_, index) => boot.start + index * MIB));
    expect(starts).toContain(boot.end);
    const sha = sha256File(path('disk.img'));
    expect(pythonSha256(path('disk.img.xz'))).toBe(sha);
    nbdkitCopy(path('disk.img.xz'), path('nbdkit.img'));
    expect(sha256File(path('nbdkit.img'))).toBe(sha);
  });

  it('seekz info lists partition 1, as sfdisk reports it, as the one editable range', () => {
    const info = ok(runCli('seekz', ['info', path('disk.img.xz')]), 'seekz info').stdout.toString('utf8');
    expect(/^editable: (.*)$/m.exec(info)?.[1]).toBe(`[${boot.start}, ${boot.end})`);
  });

  it('seekz extract --partition 1 gives the bytes of partition 1', () => {
    expectBootExtracted(path('disk.img.xz'), path('disk.img'), path('boot-out.img'), boot, tools);
  });

  it('seekz patch --from writes a debugfs edit back, reading the partition and the blocks it touches', () => {
    editBootEntry(dir!.path, path('boot-out.img'), tools);
    const changed = compareRanges(path('disk.img'), boot.start, path('boot-out.img'), 0, boot.end - boot.start).differing;
    expect(changed).toBeGreaterThan(0);
    const patch = ok(runCli('seekz', ['patch', path('disk.img.xz'), '--from', path('boot-out.img'), '--partition', '1', '-v']), 'seekz patch');
    const report = /wrote (\d+) bytes, read (\d+) bytes \(.*\) of the file; (\d+) block checks? \(CRC64\) recomputed/.exec(patch.stderr);
    expect(report, `no "wrote N bytes, read N bytes … N block checks (CRC64) recomputed" in: ${patch.stderr}`).not.toBeNull();
    const [written, read, checks] = [Number(report![1]), Number(report![2]), Number(report![3])];
    expect(written).toBeGreaterThanOrEqual(changed);
    expect(written).toBeLessThan(64 * 1024);
    // Comparing reads the stored partition once; fixing the checks reads each touched 1 MiB block
    // again. The compressed rest (the index aside) is not read.
    const stored = boot.end - boot.start;
    expect(checks).toBeGreaterThan(0);
    expect(read - stored, `read ${read} bytes with ${stored} stored, ${checks} blocks touched`).toBeLessThan(checks * (MIB + 4096) + 64 * 1024);
  });

  it('the patched file passes xz -t and Python, holds the edit (xz -dc), and nothing outside partition 1 changed', () => {
    ok(run(tools.xz, ['-t', path('disk.img.xz')]), 'xz -t');
    xzDecompress(path('disk.img.xz'), path('disk2.img'));
    expectEdited(path('disk2.img'));
    expect(pythonSha256(path('disk.img.xz'))).toBe(sha256File(path('disk2.img')));
  });

  it('refuses an edit inside partition 2, naming the editable range, and leaves the file untouched', () => {
    expectRefusedOutsideBoot(path('disk.img.xz'), root, boot);
  });

  it('the same edit through seekz serve with qemu-io gives the same file, and qemu-io is refused outside /boot', () => {
    // The 4 KiB blocks debugfs changed, each written by qemu-io from a file of its bytes.
    const commands = qemuIoWrites(dir!.path, path('disk.img'), path('boot-out.img'), boot);
    expect(commands.length).toBeGreaterThan(0);
    ok(runCli('seekz', ['serve', path('serve.img.xz'), '--run', `qemu-io -f raw ${commands.join(' ')} "$uri"`]), 'qemu-io through seekz serve');
    const refused = runCli('seekz', ['serve', path('serve.img.xz'), '--run', `qemu-io -f raw -c 'write -P 0x5a ${root.start + MIB} 4096' "$uri"`]);
    expect(`${refused.stdout}${refused.stderr}`).toMatch(/Operation not permitted/);

    ok(run(tools.xz, ['-t', path('serve.img.xz')]), 'xz -t');
    xzDecompress(path('serve.img.xz'), path('disk3.img'));
    expectEdited(path('disk3.img'));
    expect(sha256File(path('disk3.img'))).toBe(sha256File(path('disk2.img')));
    nbdkitCopy(path('serve.img.xz'), path('nbdkit2.img'));
    expect(sha256File(path('nbdkit2.img'))).toBe(sha256File(path('disk2.img')));
  });
});
