import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patchFile, patchFromRegion, differingRuns } from '../src/edit/patch.js';
import { readGzipLayout } from '../src/gzip/layout.js';
import { bufferSource } from '../src/source/buffer.js';
import { fileSource } from '../src/source/file.js';
import { diskLikeData, requireTool, run, runCli, tempDir } from './helpers/tools.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('seekz patch', () => {
  let dir: { path: string; remove: () => void };
  const data = diskLikeData(6_000_000, 42);
  const stored = { start: 1_000_000, end: 3_500_000 };
  let original: string; // a seekz partial-deflate file
  beforeAll(() => {
    requireTool('gzip', 'gzip');
    requireTool('pigz', 'pigz');
    dir = tempDir();
    writeFileSync(join(dir.path, 'in.img'), data);
    original = join(dir.path, 'orig.gz');
    const made = runCli('partial-deflate', ['-q', join(dir.path, 'in.img'), original, String(stored.start), String(stored.end)]);
    expect(made.status, made.stderr).toBe(0);
  });
  afterAll(() => dir.remove());

  const copyOf = (path: string, name: string) => {
    const copy = join(dir.path, name);
    writeFileSync(copy, readFileSync(path));
    return copy;
  };

  it('fixes the CRC-32 so gzip -t passes, and changes exactly the target bytes', async () => {
    const path = copyOf(original, 'crc.gz');
    const edit = diskLikeData(70_000, 7).map((byte) => byte ^ 0xff); // spans two stored blocks
    const offset = stored.start + 65_000;
    const result = await patchFile(path, [{ offset, data: edit }]);
    expect(result.bytesWritten).toBe(edit.length);
    expect(result.walked).toBe(false);
    expect(result.newCrc).not.toBe(result.oldCrc);
    expect(run('gzip', ['-t', path]).status).toBe(0);
    const expected = new Uint8Array(data);
    expected.set(edit, offset);
    expect(sha256(run('gzip', ['-dc', path]).stdout)).toBe(sha256(expected));
  });

  it('reads only the header, the trailer and the old bytes: not the compressed data', async () => {
    const path = copyOf(original, 'cost.gz');
    const result = await patchFile(path, [{ offset: stored.start + 12345, data: new Uint8Array(4096).fill(0x41) }]);
    // The I/O plan: one bounded header fetch (room for a 64 KiB map), the trailer, the 4 KiB of old bytes.
    expect(result.bytesRead).toBe(65536 + 1024 + 8 + 4096);
  });

  it('refuses bytes outside stored ranges before writing anything, and lists the editable ranges', () => {
    const path = copyOf(original, 'refuse.gz');
    const before = sha256(readFileSync(path));
    writeFileSync(join(dir.path, 'four.bin'), 'abcd');
    // Straddles the end of the stored range: the first bytes are editable, the last is not.
    const result = runCli('seekz', ['patch', path, '--offset', String(stored.end - 3), '--data', join(dir.path, 'four.bin')]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`editable ranges: [${stored.start}, ${stored.end})`);
    expect(sha256(readFileSync(path))).toBe(before);
  });

  it('--from writes back only the bytes that differ', async () => {
    const path = copyOf(original, 'from.gz');
    const region = new Uint8Array(data.subarray(stored.start, stored.end));
    region[10] ^= 1;
    region[20] ^= 1; // folded into the same run as byte 10
    region[2_000_000] ^= 0x80;
    const result = await patchFromRegion(path, bufferSource(region), stored.start);
    expect(result.bytesWritten).toBe(11 + 1);
    const expected = new Uint8Array(data);
    expected.set(region, stored.start);
    expect(sha256(run('gzip', ['-dc', path]).stdout)).toBe(sha256(expected));
    expect(run('gzip', ['-t', path]).status).toBe(0);
  });

  it('differingRuns folds near runs and keeps far ones apart', () => {
    const a = new Uint8Array(1000);
    const b = new Uint8Array(1000);
    b[5] = 1;
    b[60] = 1;
    b[500] = 1;
    expect(differingRuns(a, b, 100).map((run) => [run.offset, run.data.length])).toEqual([
      [105, 56],
      [600, 1],
    ]);
    expect(differingRuns(a, a, 0)).toEqual([]);
  });

  it('CLI: --data from a file and from stdin', () => {
    const path = copyOf(original, 'cli.gz');
    writeFileSync(join(dir.path, 'new.bin'), 'hello, boot partition');
    expect(runCli('seekz', ['patch', '-q', path, '--offset', String(stored.start), '--data', join(dir.path, 'new.bin')]).status).toBe(0);
    const piped = runCli('seekz', ['patch', '-v', path, '--offset', String(stored.start + 100), '--data', '-'], { input: 'from stdin' });
    expect(piped.status).toBe(0);
    expect(piped.stderr).toMatch(/wrote 10 bytes, read .* of the file; crc32 0x[0-9a-f]{8} -> 0x[0-9a-f]{8}/);
    const out = run('gzip', ['-dc', path]).stdout;
    expect(out.subarray(stored.start, stored.start + 21).toString()).toBe('hello, boot partition');
    expect(out.subarray(stored.start + 100, stored.start + 110).toString()).toBe('from stdin');
  });

  it('extract --range gives the bytes, and refuses to overwrite without -f', () => {
    const out = join(dir.path, 'region.bin');
    expect(runCli('seekz', ['extract', original, '--range', '999000:1001000', '-o', out]).status).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(data.subarray(999_000, 1_001_000)));
    const again = runCli('seekz', ['extract', original, '--range', '0:10', '-o', out]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
  });
});

describe('patching gzip files that seekz did not write', () => {
  let dir: { path: string; remove: () => void };
  beforeAll(() => {
    requireTool('pigz', 'pigz');
    requireTool('gzip', 'gzip');
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  it('finds stored blocks in pigz -0 output by walking, says so, and patches them', async () => {
    const data = diskLikeData(700_000, 5);
    writeFileSync(join(dir.path, 'in.img'), data);
    const path = join(dir.path, 'pigz0.gz');
    writeFileSync(path, run('pigz', ['-0', '-c', join(dir.path, 'in.img')]).stdout);
    const edit = new TextEncoder().encode('edited by seekz across a stored block boundary '.repeat(4000));
    const result = runCli('seekz', ['patch', '-v', path, '--offset', '100000', '--data', '-'], { input: edit });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/no seekz map; walking its deflate stream/);
    expect(run('gzip', ['-t', path]).status).toBe(0);
    expect(run('pigz', ['-t', path]).status).toBe(0);
    const expected = new Uint8Array(data);
    expected.set(edit, 100_000);
    expect(sha256(run('gzip', ['-dc', path]).stdout)).toBe(sha256(expected));
  });

  it('in gzip -6 output, refuses compressed bytes and accepts stored ones', async () => {
    // Random bytes do not compress, so gzip stores them; text around them is compressed.
    const text = new TextEncoder().encode('compressible text '.repeat(20_000));
    const random = diskLikeData(200_000, 3).map((byte, index) => (byte * 31 + index * 17) & 0xff);
    for (let index = 0; index < random.length; index++) random[index] = (Math.sin(index + 1) * 1e9) & 0xff;
    const data = Buffer.concat([text, random, text]);
    writeFileSync(join(dir.path, 'mixed'), data);
    const path = join(dir.path, 'mixed.gz');
    writeFileSync(path, run('gzip', ['-6', '-c', '-n', join(dir.path, 'mixed')]).stdout);
    const source = await fileSource(path);
    const layout = await readGzipLayout(source);
    await source.close();
    expect(layout.walked).toBe(true);
    expect(layout.totalLength).toBe(data.length);
    const editable = layout.editableRanges();
    await expect(patchFile(path, [{ offset: 10, data: new Uint8Array(4) }])).rejects.toMatchObject({ code: 'GZIP_NOT_EDITABLE' });
    if (editable.length === 0) throw new Error('expected gzip to store some of the random bytes');
    const target = editable[0]!;
    await patchFile(path, [{ offset: target.start, data: new Uint8Array(16).fill(7) }]);
    expect(run('gzip', ['-t', path]).status).toBe(0);
    const expected = Buffer.from(data);
    expected.fill(7, target.start, target.start + 16);
    expect(sha256(run('gzip', ['-dc', path]).stdout)).toBe(sha256(expected));
  });

  it('refuses multi-member files with a specific error', async () => {
    const one = run('gzip', ['-c', '-n'], { input: 'first' }).stdout;
    const two = run('pigz', ['-0', '-c'], { input: 'second' }).stdout;
    const path = join(dir.path, 'multi.gz');
    writeFileSync(path, Buffer.concat([one, two]));
    await expect(patchFile(path, [{ offset: 0, data: new Uint8Array(1) }])).rejects.toMatchObject({ code: 'GZIP_BAD_HEADER' });
  });
});
