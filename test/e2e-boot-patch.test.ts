/**
 * End to end, the loop seekz exists for: a GPT disk image whose ext4 /boot holds a BLS entry is
 * compressed with partial-deflate (partition 1 stored), the partition is extracted, edited with
 * debugfs, and patched back in place. Every verdict comes from the real tools (sfdisk, gzip, pigz,
 * Python's gzip, debugfs, e2fsck), never from seekz reading its own output. No root is needed:
 * the file systems are made from directories with `mkfs.ext4 -d` and edited with debugfs.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildBootDisk,
  compareRanges,
  copyRange,
  debugfsCat as catEntry,
  DISK_SIZE,
  editBootEntry,
  findBootTools,
  MIB,
  NEW_ENTRY,
  ok,
  OLD_ENTRY,
  sha256File,
  type BootTools,
  type Range,
} from './helpers/boot-disk.js';
import { cliPath, findTool, run, runCli, tempDir } from './helpers/tools.js';

// ---------------------------------------------------------------------------------------------

describe('boot partition: compress, extract, edit with debugfs, patch back in place', { timeout: 180_000 }, () => {
  let dir: { path: string; remove: () => void } | undefined;
  const tools = {} as BootTools & Record<'gzip' | 'zcat' | 'pigz', string>;
  const path = (name: string) => join(dir!.path, name);
  let boot: Range;
  let root: Range;

  const debugfsCat = (image: string) => catEntry(image, tools);

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
    Object.assign(tools, findBootTools());
    tools.gzip = findTool('gzip', 'gzip');
    tools.zcat = findTool('zcat', 'gzip');
    tools.pigz = findTool('pigz', 'pigz');
    for (const cli of ['seekz', 'partial-deflate'] as const) {
      if (!existsSync(cliPath(cli))) throw new Error(`${cliPath(cli)} is missing; build first: npx tsc -p tsconfig.json`);
    }
    dir = tempDir('seekz-e2e-boot-');

    ({ boot, root } = buildBootDisk(dir.path, tools));
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
    editBootEntry(dir!.path, path('boot-out.img'), tools);
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
