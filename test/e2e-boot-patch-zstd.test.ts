/**
 * End to end on .zst, the same loop as test/e2e-boot-patch-xz.test.ts: a GPT disk image whose
 * ext4 /boot holds a BLS entry is compressed with seekzstd --store-partition 1, the partition is
 * extracted, edited with debugfs, and patched back in place; then the same edit goes in through
 * `seekz serve` with qemu-io. Every verdict comes from the real tools (zstd -t, zstd -dc, zstd's
 * reference seekable decompressor, debugfs, e2fsck), never from seekz reading its own output.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync } from 'node:fs';
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
import { cliPath, findTool, run, runCli, tempDir } from './helpers/tools.js';

describe('zstd boot partition: seekzstd --store-partition, extract, edit with debugfs, patch back in place', { timeout: 240_000 }, () => {
  let dir: { path: string; remove: () => void } | undefined;
  const tools = {} as BootTools & Record<'zstd' | 'qemuIo' | 'reference', string>;
  const path = (name: string) => join(dir!.path, name);
  let boot: Range;
  let root: Range;

  /** zstd -dc into a file: the independent oracle of what the .zst holds. */
  function zstdDecompress(zstFile: string, output: string): void {
    const fd = openSync(output, 'w');
    try {
      const zstd = spawnSync(tools.zstd, ['-dc', zstFile], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
      expect(zstd.status, `zstd -dc: ${zstd.stderr}`).toBe(0);
    } finally {
      closeSync(fd);
    }
  }

  /** What zstd's reference seekable decompressor reads (it checks every frame against the seek table's checksum). */
  function referenceDecompress(zstFile: string, size: number, output: string): void {
    const fd = openSync(output, 'w');
    try {
      const result = spawnSync(join(tools.reference, 'seekable_decompression'), [zstFile, '0', String(size)], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8' });
      expect(result.status, `seekable_decompression: ${result.stderr}`).toBe(0);
    } finally {
      closeSync(fd);
    }
  }

  const expectEdited = (image: string) => expectEditedImage(image, path('disk.img'), path('boot-out.img'), boot, tools);

  beforeAll(() => {
    Object.assign(tools, findBootTools());
    tools.zstd = findTool('zstd', 'zstd');
    tools.qemuIo = findTool('qemu-io', 'qemu-utils');
    tools.reference = execFileSync('bash', [new URL('../scripts/build-zstd-seekable.sh', import.meta.url).pathname], { encoding: 'utf8' }).trim();
    for (const cli of ['seekz', 'seekzstd'] as const) {
      if (!existsSync(cliPath(cli))) throw new Error(`${cliPath(cli)} is missing; build first: npx tsc -p tsconfig.json`);
    }
    dir = tempDir('seekz-e2e-boot-zstd-');
    ({ boot, root } = buildBootDisk(dir.path, tools));
  }, 600_000);

  afterAll(() => dir?.remove());

  it('seekzstd --store-partition 1 writes a .zst that zstd and the reference decompressor read back exactly', () => {
    ok(runCli('seekzstd', ['-q', '--store-partition', '1', path('disk.img')]), 'seekzstd');
    copyFileSync(path('disk.img.zst'), path('serve.img.zst')); // for the edit through the server
    ok(run(tools.zstd, ['-t', path('disk.img.zst')]), 'zstd -t');
    const sha = sha256File(path('disk.img'));
    zstdDecompress(path('disk.img.zst'), path('zstd.img'));
    expect(sha256File(path('zstd.img'))).toBe(sha);
    referenceDecompress(path('disk.img.zst'), boot.end + MIB, path('reference.img'));
    expect(compareRanges(path('disk.img'), 0, path('reference.img'), 0, boot.end + MIB).firstDifference).toBeUndefined();
  });

  it('seekz info lists partition 1, as sfdisk reports it, as the one editable range, in 1 MiB frames from its edge', () => {
    const info = ok(runCli('seekz', ['info', path('disk.img.zst')]), 'seekz info').stdout.toString('utf8');
    expect(/^editable: (.*)$/m.exec(info)?.[1]).toBe(`[${boot.start}, ${boot.end})`);
    // Frame lines: number, compressed offset, uncompressed offset, compressed size, uncompressed size, ratio, checksum
    const starts = info.split('\n').map((line) => line.trim().split(/\s+/)).filter((fields) => fields.length === 7 && /^\d+$/.test(fields[0]!)).map((fields) => Number(fields[2]));
    const inBoot = starts.filter((start) => start >= boot.start && start < boot.end);
    expect(inBoot).toEqual(Array.from({ length: (boot.end - boot.start) / MIB }, (_, index) => boot.start + index * MIB));
    expect(starts).toContain(boot.end);
  });

  it('seekz extract --partition 1 gives the bytes of partition 1', () => {
    expectBootExtracted(path('disk.img.zst'), path('disk.img'), path('boot-out.img'), boot, tools);
  });

  it('seekz patch --from writes a debugfs edit back, reading the partition and the frames it touches', () => {
    editBootEntry(dir!.path, path('boot-out.img'), tools);
    const changed = compareRanges(path('disk.img'), boot.start, path('boot-out.img'), 0, boot.end - boot.start).differing;
    expect(changed).toBeGreaterThan(0);
    const patch = ok(runCli('seekz', ['patch', path('disk.img.zst'), '--from', path('boot-out.img'), '--partition', '1', '-v']), 'seekz patch');
    const report = /wrote (\d+) bytes, read (\d+) bytes \(.*\) of the file; (\d+) frame checksums? \(XXH64\) recomputed, (\d+) fields? written/.exec(patch.stderr);
    expect(report, `no "wrote N bytes, read N bytes … N frame checksums (XXH64) recomputed" in: ${patch.stderr}`).not.toBeNull();
    const [written, read, frames, fields] = [Number(report![1]), Number(report![2]), Number(report![3]), Number(report![4])];
    expect(written).toBeGreaterThanOrEqual(changed);
    expect(written).toBeLessThan(64 * 1024);
    expect(fields).toBe(2 * frames); // each frame's Content_Checksum and its seek table entry
    // Comparing reads the stored partition once; fixing the checksums reads each touched 1 MiB
    // frame again. The compressed rest (the seek table aside) is not read.
    const stored = boot.end - boot.start;
    expect(frames).toBeGreaterThan(0);
    expect(read - stored, `read ${read} bytes with ${stored} stored, ${frames} frames touched`).toBeLessThan(frames * (MIB + 4096) + 64 * 1024);
  });

  it('the patched file passes zstd -t and the reference decompressor, holds the edit (zstd -dc), and nothing outside partition 1 changed', () => {
    ok(run(tools.zstd, ['-t', path('disk.img.zst')]), 'zstd -t');
    zstdDecompress(path('disk.img.zst'), path('disk2.img'));
    expectEdited(path('disk2.img'));
    referenceDecompress(path('disk.img.zst'), boot.end + MIB, path('reference2.img'));
    expect(compareRanges(path('disk2.img'), 0, path('reference2.img'), 0, boot.end + MIB).firstDifference).toBeUndefined();
  });

  it('refuses an edit inside partition 2, naming the editable range, and leaves the file untouched', () => {
    expectRefusedOutsideBoot(path('disk.img.zst'), root, boot);
  });

  it('the same edit through seekz serve with qemu-io gives the same file, and qemu-io is refused outside /boot', () => {
    const commands = qemuIoWrites(dir!.path, path('disk.img'), path('boot-out.img'), boot);
    expect(commands.length).toBeGreaterThan(0);
    // Written, flushed into the file, then read back through the same server: its checked reads
    // must hold the frame against the seek table's new checksum (a stale one fails with EIO).
    const first = /write -s (\S+) (\d+) 4096/.exec(commands[0]!)!;
    const served = ok(runCli('seekz', ['serve', path('serve.img.zst'), '--run', `qemu-io -f raw ${commands.join(' ')} -c 'flush' -c 'read -v ${first[2]} 16' "$uri"`]), 'qemu-io through seekz serve');
    const firstBytes = readFileSync(first[1]!).subarray(0, 16);
    expect(served.stdout.toString()).toContain([...firstBytes].map((byte) => byte.toString(16).padStart(2, '0')).join(' ').slice(0, 23));
    const refused = runCli('seekz', ['serve', path('serve.img.zst'), '--run', `qemu-io -f raw -c 'write -P 0x5a ${root.start + MIB} 4096' "$uri"`]);
    expect(`${refused.stdout}${refused.stderr}`).toMatch(/Operation not permitted/);

    ok(run(tools.zstd, ['-t', path('serve.img.zst')]), 'zstd -t');
    zstdDecompress(path('serve.img.zst'), path('disk3.img'));
    expectEdited(path('disk3.img'));
    expect(sha256File(path('serve.img.zst'))).toBe(sha256File(path('disk.img.zst')));
  });
});
