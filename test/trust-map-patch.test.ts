/**
 * Issue 8, "never a wrong byte", for the seekz map and for patching:
 * - random reads of partial-deflate files check a CRC-32 per segment (map version 2);
 * - a damaged header or map gives a clean error or the right bytes, never short or wrong output;
 * - files with the old map (version 1) still read, and say that their reads are unverified;
 * - patch and NBD writes keep the segment CRC-32s and the trailer right, in one transaction;
 * - in a gzip seekz did not write, an edit that a later back-reference would copy is refused.
 * Every outcome is judged by the real tools (gzip -t, zcat, Python's gzip, qemu-io), not by our reader.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteWriter } from '../src/cursor.js';
import { MAX_REFERENCE_RANGES, walkDeflate } from '../src/deflate/walk.js';
import { patchFile } from '../src/edit/patch.js';
import { SeekzError } from '../src/errors.js';
import { parseGzipHeader } from '../src/gzip/header.js';
import { readGzipLayout } from '../src/gzip/layout.js';
import { SEEKZ_SUBFIELD_ID, type SeekzMap } from '../src/gzip/map.js';
import { openGzip } from '../src/gzip/reader.js';
import { bufferSource } from '../src/source/buffer.js';
import { fileSource } from '../src/source/file.js';
import { diskLikeData, noise, requireTool, run, runCli, sha256, SYSTEM_PYTHON, tempDir, type RunResult } from './helpers/tools.js';

let dir: { path: string; remove: () => void };
const path = (name: string) => join(dir.path, name);

/** 3 MB like the issue's file, 256 KiB chunks, stored [1 MiB, 2.5 MiB): two stored segments. */
const DATA_LENGTH = 3_000_000;
const STORED = { start: 1 << 20, end: 2_621_440 };
let data: Uint8Array;
let original: Uint8Array; // the partial-deflate file

beforeAll(() => {
  for (const tool of ['gzip', 'zcat']) requireTool(tool, 'gzip');
  requireTool('qemu-io', 'qemu-utils');
  dir = tempDir('seekz-trust-map-');
  data = diskLikeData(DATA_LENGTH, 81);
  writeFileSync(path('data.img'), data);
  ok(runCli('partial-deflate', ['-q', '--chunk-size', '256K', path('data.img'), path('data.gz'), String(STORED.start), String(STORED.end)]), 'partial-deflate');
  original = readFileSync(path('data.gz'));
});

afterAll(() => dir?.remove());

function ok(result: RunResult, what: string): RunResult {
  if (result.status !== 0) throw new Error(`${what} exited ${result.status}: ${result.stderr}`);
  return result;
}

/** A clean failure: non-zero exit, one line on stderr that names the format, no stack trace. */
function expectCleanError(result: RunResult, what: string): void {
  expect(result.status, `${what}: exit status`).not.toBe(0);
  // Notes that say which path a command takes (building an index, walking) are not errors.
  const lines = result.stderr.trim().split('\n').filter((line) => !/^seekz: .* has no (index|seekz map);/.test(line));
  expect(lines.length, `${what}: ${result.stderr}`).toBe(1);
  expect(lines[0], what).toMatch(/^seekz: \S+: ((gzip|deflate): )?/);
  expect(result.stderr, what).not.toMatch(/\n\s+at |internal error/);
}

/** `seekz cat` and a `seekz read` give exactly the original bytes with exit 0, or a clean error. */
function expectRightOrCleanError(file: string, expected: Uint8Array, what: string): 'right' | 'error' {
  const cat = runCli('seekz', ['cat', file]);
  if (cat.status === 0) expect(sha256(cat.stdout), `${what}: cat exited 0, so its output must be right`).toBe(sha256(expected));
  else expectCleanError(cat, `${what}: cat`);
  const read = runCli('seekz', ['read', file, '--offset', String(STORED.start - 1000), '--length', '300000']);
  if (read.status === 0) expect(sha256(read.stdout), `${what}: read exited 0`).toBe(sha256(expected.subarray(STORED.start - 1000, STORED.start - 1000 + 300_000)));
  else expectCleanError(read, `${what}: read`);
  return cat.status === 0 ? 'right' : 'error';
}

async function mapOf(file: Uint8Array): Promise<{ map: SeekzMap; headerLength: number; mapOffset: number }> {
  const layout = await readGzipLayout(bufferSource(file));
  return { map: layout.map!, headerLength: layout.header.length, mapOffset: layout.mapOffset! };
}

describe('per-chunk CRC-32 catches damage that inflates without complaint', () => {
  it('a damaged compressed chunk: random reads and cat fail cleanly, gzip -t agrees, other chunks still read', async () => {
    const { map, headerLength } = await mapOf(original);
    const segment = map.segments.find((candidate) => candidate.kind === 'compressed' && candidate.uStart > 0)!;
    const start = headerLength + segment.cStart;
    const compressed = original.subarray(start, start + segment.cLength);
    // Find a bit flip that still inflates to the same length, so only the CRC-32 can tell.
    let damaged: Uint8Array | undefined;
    for (let at = 200; at < compressed.length && !damaged; at++) {
      for (let bit = 0; bit < 8 && !damaged; bit++) {
        const trial = new Uint8Array(compressed);
        trial[at]! ^= 1 << bit;
        try {
          const out = inflateRawSync(trial, { finishFlush: constants.Z_SYNC_FLUSH });
          if (out.length === segment.uLength && sha256(out) !== sha256(data.subarray(segment.uStart, segment.uStart + segment.uLength))) {
            damaged = new Uint8Array(original);
            damaged[start + at]! ^= 1 << bit;
          }
        } catch {
          // this flip breaks the deflate data; zlib would catch it too
        }
      }
    }
    expect(damaged, 'a bit flip that inflates to the same length').toBeDefined();
    writeFileSync(path('bad-chunk.gz'), damaged!);
    expect(run('gzip', ['-t', path('bad-chunk.gz')]).status).not.toBe(0);
    const read = runCli('seekz', ['read', path('bad-chunk.gz'), '--offset', String(segment.uStart + 10), '--length', '100']);
    expectCleanError(read, 'read of the damaged chunk');
    expect(read.stderr).toContain('fail their crc-32');
    expect(read.stdout.length).toBe(0);
    expectCleanError(runCli('seekz', ['cat', path('bad-chunk.gz')]), 'cat');
    const elsewhere = ok(runCli('seekz', ['read', path('bad-chunk.gz'), '--offset', '0', '--length', '1000']), 'read of an undamaged chunk');
    expect(sha256(elsewhere.stdout)).toBe(sha256(data.subarray(0, 1000)));
  });

  it('a damaged stored byte: a small read in its segment fails cleanly, and so does cat; gzip -t agrees', async () => {
    const layout = await readGzipLayout(bufferSource(original));
    const target = STORED.start + 16 * 65535 + 12345; // inside the second stored segment
    const [extent] = layout.storedExtents(target, target + 1)!;
    const damaged = new Uint8Array(original);
    damaged[extent!.fileOffset]! ^= 0x10;
    writeFileSync(path('bad-stored.gz'), damaged);
    expect(run('gzip', ['-t', path('bad-stored.gz')]).status).not.toBe(0);
    // A 16-byte read far from the damaged byte, in the same segment: the segment is checked whole.
    const read = runCli('seekz', ['read', path('bad-stored.gz'), '--offset', String(STORED.end - 100), '--length', '16']);
    expectCleanError(read, 'read in the damaged stored segment');
    expect(read.stderr).toContain('fail their crc-32');
    expectCleanError(runCli('seekz', ['cat', path('bad-stored.gz')]), 'cat');
    const otherSegment = ok(runCli('seekz', ['read', path('bad-stored.gz'), '--offset', String(STORED.start), '--length', '4096']), 'read of the first stored segment');
    expect(sha256(otherSegment.stdout)).toBe(sha256(data.subarray(STORED.start, STORED.start + 4096)));
  });
});

describe('a map thinned to fit FEXTRA still checks every read', () => {
  it('54 MiB in 4 KiB chunks (more than fit): groups carry combined CRC-32s; reads, a patch and gzip -t agree', async () => {
    const big = Buffer.concat([diskLikeData(20 << 20, 7), noise(4 << 20, 9), diskLikeData(30 << 20, 8)]);
    writeFileSync(path('thin.img'), big);
    const stored = { start: (20 << 20) + 100, end: (24 << 20) - 100 };
    ok(runCli('partial-deflate', ['-q', '--chunk-size', '4K', path('thin.img'), path('thin.gz'), String(stored.start), String(stored.end)]), 'partial-deflate');
    const file = readFileSync(path('thin.gz'));
    const { map } = await mapOf(file);
    expect(map.groupChunks).toBeGreaterThan(1);
    expect(map.verified).toBe(true);
    expect(parseGzipHeader(file, file.length).length).toBeLessThanOrEqual(65535 + 12);
    const edit = noise(5000, 3);
    const at = stored.start + 3 * 65535 - 2000;
    await patchFile(path('thin.gz'), [{ offset: at, data: edit }]);
    big.set(edit, at);
    ok(run('gzip', ['-t', path('thin.gz')]), 'gzip -t');
    for (const offset of [0, 5 << 20, at - 10, stored.end - 50, 50 << 20]) {
      const read = ok(runCli('seekz', ['read', path('thin.gz'), '--offset', String(offset), '--length', '6000']), `read at ${offset}`);
      expect(sha256(read.stdout), `read at ${offset}`).toBe(sha256(big.subarray(offset, offset + 6000)));
    }
    expect(sha256(ok(runCli('seekz', ['cat', path('thin.gz')]), 'cat').stdout)).toBe(sha256(big));
  });
});

describe('A flipped FLG bit in a partial-deflate file made cat print 13 bytes of a 3 MB file', () => {
  it('every FLG bit flipped: cat and read give the right bytes or a clean error, never short output with exit 0', () => {
    for (let bit = 0; bit < 8; bit++) {
      const damaged = new Uint8Array(original);
      damaged[3]! ^= 1 << bit; // RFC 1952 §2.3: FLG
      writeFileSync(path(`flg-${bit}.gz`), damaged);
      const outcome = expectRightOrCleanError(path(`flg-${bit}.gz`), data, `FLG bit ${bit}`);
      // gzip itself ignores FTEXT; everything else breaks the file for gzip too.
      if (bit !== 0) expect(outcome, `FLG bit ${bit}`).toBe('error');
    }
  });

  it('damaged map fields and trailer bytes: the claims are checked against each other, so reads are right or fail (fuzz)', async () => {
    const { map } = await mapOf(original);
    const header = parseGzipHeader(original, original.length);
    const subfield = header.extra.find((extra) => extra.id === SEEKZ_SUBFIELD_ID)!;
    const used = map.segments[map.segments.length - 1]!.crcOffset! + 4; // the rest is zero padding
    const positions = fc.oneof(
      fc.integer({ min: 10, max: subfield.dataOffset + used - 1 }), // XLEN, subfield header, map
      fc.integer({ min: original.length - 8, max: original.length - 1 }), // trailer
    );
    await fc.assert(
      fc.asyncProperty(positions, fc.integer({ min: 1, max: 255 }), async (at, flip) => {
        const damaged = new Uint8Array(original);
        damaged[at]! ^= flip;
        let out: Uint8Array | undefined;
        try {
          const reader = await openGzip(bufferSource(damaged));
          out = await reader.read(0, reader.size + 1);
        } catch (error) {
          expect(error).toBeInstanceOf(SeekzError);
          return;
        }
        expect(out.length, `byte ${at} ^ ${flip}: length`).toBe(data.length);
        expect(sha256(out), `byte ${at} ^ ${flip}`).toBe(sha256(data));
      }),
      { numRuns: 300, seed: 8 },
    );
  });

  it('the same through the CLI for each field of the map header', async () => {
    const header = parseGzipHeader(original, original.length);
    const mapStart = header.extra.find((extra) => extra.id === SEEKZ_SUBFIELD_ID)!.dataOffset;
    // version, flags, chunk size, total length, deflate length, group size, region count, first region
    for (let at = mapStart; at < mapStart + 14; at++) {
      const damaged = new Uint8Array(original);
      damaged[at]! ^= 0x01;
      writeFileSync(path('map-field.gz'), damaged);
      expectRightOrCleanError(path('map-field.gz'), data, `map byte ${at - mapStart}`);
    }
  });
});

/** The version 1 map of the same file (no CRC-32s, one segment per stored region), as seekz wrote it before. */
function encodeVersion1(map: SeekzMap, reserved: number): Uint8Array {
  const writer = new ByteWriter().u8(1).u8(1);
  writer.varint(map.chunkSize).varint(map.totalLength).varint(map.deflateLength).varint(map.groupChunks).varint(map.regions.length);
  for (const region of map.regions) writer.u8(region.kind === 'stored' ? 1 : 0).varint(region.length);
  for (const segment of map.segments) if (segment.kind === 'compressed') writer.varint(segment.cLength);
  const payload = new Uint8Array(reserved);
  payload.set(writer.finish());
  return payload;
}

describe('files written with the version 1 map still open, with unverified reads', () => {
  it('reads right, says "verified: no" in info, and patches keep gzip -t happy', async () => {
    const { map, mapOffset, headerLength } = await mapOf(original);
    const old = new Uint8Array(original);
    old.set(encodeVersion1(map, headerLength - mapOffset), mapOffset);
    writeFileSync(path('v1.gz'), old);
    ok(run('gzip', ['-t', path('v1.gz')]), 'gzip -t');
    const info = ok(runCli('seekz', ['info', path('v1.gz')]), 'info').stdout.toString();
    expect(info).toContain('verified: no (map version 1; rewrite with partial-deflate for checked reads)');
    expect(ok(runCli('seekz', ['info', path('data.gz')]), 'info').stdout.toString()).toContain('verified: crc-32 per chunk');
    expect(sha256(ok(runCli('seekz', ['cat', path('v1.gz')]), 'cat').stdout)).toBe(sha256(data));
    writeFileSync(path('patch.bin'), 'version one');
    ok(runCli('seekz', ['patch', path('v1.gz'), '--offset', String(STORED.start + 7), '--data', path('patch.bin')]), 'patch');
    ok(run('gzip', ['-t', path('v1.gz')]), 'gzip -t after the patch');
    const expected = new Uint8Array(data);
    expected.set(new TextEncoder().encode('version one'), STORED.start + 7);
    expect(sha256(ok(run('zcat', [path('v1.gz')]), 'zcat').stdout)).toBe(sha256(expected));
  });
});

describe('patch updates the segment CRC-32s and the trailer in one journaled transaction', () => {
  it('reads after a patch verify; gzip -t, zcat and Python gzip agree; the cost stays small', async () => {
    writeFileSync(path('patched.gz'), original);
    // Across the boundary of the two stored segments, and in both.
    const boundary = STORED.start + 16 * 65535;
    const edit = noise(70_000, 5);
    writeFileSync(path('edit.bin'), edit);
    const at = boundary - 30_000;
    const result = ok(runCli('seekz', ['patch', path('patched.gz'), '--offset', String(at), '--data', path('edit.bin'), '-v']), 'patch');
    const bytesRead = Number(/read (\d+) bytes/.exec(result.stderr)![1]);
    expect(bytesRead).toBeLessThanOrEqual(65536 + 1024 + edit.length + 8);
    const expected = new Uint8Array(data);
    expected.set(edit, at);
    ok(run('gzip', ['-t', path('patched.gz')]), 'gzip -t');
    expect(sha256(ok(run('zcat', [path('patched.gz')]), 'zcat').stdout)).toBe(sha256(expected));
    const python = ok(run(SYSTEM_PYTHON, ['-c', `import gzip,sys,hashlib; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())`, path('patched.gz')]), 'python');
    expect(python.stdout.toString().trim()).toBe(sha256(expected));
    // seekz's verified reads pass in both segments, and cat checks every segment.
    for (const offset of [at, boundary, at + edit.length - 10]) {
      const read = ok(runCli('seekz', ['read', path('patched.gz'), '--offset', String(offset), '--length', '10']), `read at ${offset}`);
      expect(sha256(read.stdout)).toBe(sha256(expected.subarray(offset, offset + 10)));
    }
    expect(sha256(ok(runCli('seekz', ['cat', path('patched.gz')]), 'cat').stdout)).toBe(sha256(expected));
    expect(ok(runCli('seekz', ['info', path('patched.gz')]), 'info').stdout.toString()).toContain('verified: crc-32 per chunk');
  });

  it('overlapping edits in one patch (a block written twice before a flush): the later wins and every CRC-32 is right', async () => {
    writeFileSync(path('overlap.gz'), original);
    const first = new Uint8Array(4096).fill(0x11);
    const second = new Uint8Array(1024).fill(0x22);
    const at = STORED.start + 5000;
    await patchFile(path('overlap.gz'), [
      { offset: at, data: first },
      { offset: at + 1000, data: second },
    ]);
    const expected = new Uint8Array(data);
    expected.set(first, at);
    expected.set(second, at + 1000);
    ok(run('gzip', ['-t', path('overlap.gz')]), 'gzip -t');
    expect(sha256(ok(runCli('seekz', ['cat', path('overlap.gz')]), 'cat').stdout)).toBe(sha256(expected));
  });

  it('the journal holds the old segment CRC-32s: rolling back an edit left half-done gives the old file', async () => {
    writeFileSync(path('rollback.gz'), original);
    const journal: { fileOffset: number; bytes: Uint8Array }[] = [];
    // Record what the patch would journal by patching a copy, then undo it with the journal left behind.
    const { writeJournal } = await import('../src/edit/journal.js');
    const layout = await readGzipLayout(bufferSource(original));
    const at = STORED.start + 100;
    const [extent] = layout.storedExtents(at, at + 8)!;
    const segment = layout.map!.segments.find((candidate) => candidate.kind === 'stored')!;
    journal.push({ fileOffset: extent!.fileOffset, bytes: original.subarray(extent!.fileOffset, extent!.fileOffset + 8) });
    journal.push({ fileOffset: layout.mapOffset! + segment.crcOffset!, bytes: original.subarray(layout.mapOffset! + segment.crcOffset!, layout.mapOffset! + segment.crcOffset! + 4) });
    journal.push({ fileOffset: original.length - 8, bytes: original.subarray(original.length - 8) });
    await writeJournal(path('rollback.gz'), original.length, journal);
    // The half-written edit: new data and a new segment CRC, the old trailer.
    const half = new Uint8Array(original);
    half.fill(0x77, extent!.fileOffset, extent!.fileOffset + 8);
    half.fill(0x00, layout.mapOffset! + segment.crcOffset!, layout.mapOffset! + segment.crcOffset! + 4);
    writeFileSync(path('rollback.gz'), half);
    const result = ok(runCli('seekz', ['read', path('rollback.gz'), '--offset', String(at), '--length', '8']), 'read rolls back first');
    expect(sha256(result.stdout)).toBe(sha256(data.subarray(at, at + 8)));
    expect(sha256(readFileSync(path('rollback.gz')))).toBe(sha256(original));
  });
});

describe('NBD writes go through the same patch: segment CRC-32s stay right', () => {
  it('qemu-io writes, flushes, reads back (verified), writes again over it; gzip -t and zcat agree afterwards', () => {
    writeFileSync(path('nbd.gz'), original);
    const at = STORED.start + 16 * 65535 - 2048; // across the two stored segments
    const commands = [
      `write -P 0x5a ${at} 4096`,
      'flush',
      `read -P 0x5a ${at} 4096`,
      `write -P 0x33 ${at + 1024} 1024`,
      `read -P 0x33 ${at + 1024} 1024`,
      'flush',
      `read -P 0x5a ${at} 1024`,
      `read -P 0x33 ${at + 1024} 1024`,
    ];
    const script = `qemu-io -f raw ${commands.map((command) => `-c '${command}'`).join(' ')} "$uri"`;
    const result = ok(runCli('seekz', ['serve', path('nbd.gz'), '--run', script]), 'seekz serve');
    expect(result.stdout.toString() + result.stderr).not.toMatch(/Pattern verification failed|error/i);
    const expected = new Uint8Array(data);
    expected.fill(0x5a, at, at + 4096);
    expected.fill(0x33, at + 1024, at + 2048);
    ok(run('gzip', ['-t', path('nbd.gz')]), 'gzip -t');
    expect(sha256(ok(run('zcat', [path('nbd.gz')]), 'zcat').stdout)).toBe(sha256(expected));
    expect(sha256(ok(runCli('seekz', ['cat', path('nbd.gz')]), 'seekz cat').stdout)).toBe(sha256(expected));
  });
});

/** R = 40000 random bytes; R + R[10000:32000] + 'hello text ' × 3000, as in the issue. */
function issueInput(): Uint8Array {
  const random = noise(40_000, 40);
  const text = new TextEncoder().encode('hello text '.repeat(3000));
  return Buffer.concat([random, random.subarray(10_000, 32_000), text]);
}

describe('Patching a foreign gzip can corrupt it', () => {
  it('gzip -6: a patch at 15000, which a later match copies, is refused and says why; the file is untouched', async () => {
    const input = issueInput();
    writeFileSync(path('issue.gz'), ok(run('gzip', ['-6', '-c'], { input }), 'gzip').stdout);
    const before = sha256(readFileSync(path('issue.gz')));
    writeFileSync(path('one.bin'), 'X');
    const refused = runCli('seekz', ['patch', path('issue.gz'), '--offset', '15000', '--data', path('one.bin')]);
    expectCleanError(refused, 'patch at 15000');
    // The match that copies byte 15000 is the one the issue saw change: R[10000:32000] sits 30000 bytes back.
    const [, at, from, to] = /a later back-reference at output offset (\d+) copies from \[(\d+), (\d+)\)/.exec(refused.stderr)!.map(Number);
    expect(from).toBeLessThanOrEqual(15000);
    expect(to).toBeGreaterThan(15000);
    expect(at! - from!).toBe(30000);
    expect(sha256(readFileSync(path('issue.gz')))).toBe(before);
    ok(run('gzip', ['-t', path('issue.gz')]), 'gzip -t');
    // Why the refusal is right: the same byte written blindly into the stored block changes the
    // copy 30000 bytes later too (what the issue saw; gzip -d still writes the data, then fails).
    const layout = await readGzipLayout(bufferSource(readFileSync(path('issue.gz'))));
    const blind = readFileSync(path('issue.gz'));
    blind[layout.storedExtents(15000, 15001)![0]!.fileOffset] ^= 0xff;
    writeFileSync(path('blind.gz'), blind);
    const decoded = run('gzip', ['-dc', path('blind.gz')]).stdout;
    const changed = [...decoded.keys()].filter((index) => decoded[index] !== input[index]);
    expect(changed).toEqual([15000, 45000]);
  });

  it('a stored byte nothing copies from is patched, and gzip -t and zcat show exactly the one changed byte', () => {
    const input = issueInput();
    writeFileSync(path('issue-ok.gz'), ok(run('gzip', ['-6', '-c'], { input }), 'gzip').stdout);
    const info = ok(runCli('seekz', ['info', path('issue-ok.gz')]), 'info').stdout.toString();
    expect(info).toMatch(/editable: \[0, 10000\)/);
    writeFileSync(path('one.bin'), 'X');
    ok(runCli('seekz', ['patch', path('issue-ok.gz'), '--offset', '5000', '--data', path('one.bin')]), 'patch at 5000');
    ok(run('gzip', ['-t', path('issue-ok.gz')]), 'gzip -t');
    const out = ok(run('zcat', [path('issue-ok.gz')]), 'zcat').stdout;
    const expected = Buffer.from(input);
    expected[5000] = 'X'.charCodeAt(0);
    expect(out.length).toBe(expected.length);
    const differing = [...out.keys()].filter((index) => out[index] !== input[index]);
    expect(differing).toEqual(input[5000] === expected[5000] ? [] : [5000]);
    expect(out.equals(expected)).toBe(true);
  });

  it('the walk keeps at most 32 copied ranges per stored block, then counts the whole block as copied', async () => {
    for (const count of [10, MAX_REFERENCE_RANGES + 8]) {
      // A stored block of random bytes, then `count` 8-byte copies of scattered places in it.
      const random = noise(60_000, 7);
      const parts: Uint8Array[] = [random];
      for (let k = 0; k < count; k++) {
        parts.push(random.subarray(28_500 + k * 100, 28_508 + k * 100), new TextEncoder().encode(`${'abc'.repeat((k % 5) + 1)}\n`));
      }
      parts.push(new TextEncoder().encode('hello text '.repeat(2000)));
      const input = Buffer.concat(parts);
      const file = path(`scattered-${count}.gz`);
      writeFileSync(file, ok(run('gzip', ['-6', '-c'], { input }), 'gzip').stdout);
      const blocks = [];
      for await (const block of walkDeflate(bufferSource(readFileSync(file)), 10)) blocks.push(block);
      const stored = blocks.find((block) => block.type === 'stored' && block.outStart === 0)!;
      const ranges = stored.references!.ranges;
      expect(ranges.length).toBeLessThanOrEqual(MAX_REFERENCE_RANGES);
      if (count > MAX_REFERENCE_RANGES) expect(ranges).toEqual([{ start: 0, end: stored.outLength, by: ranges[0]!.by }]);
      else expect(ranges.map((range) => range.start)).toEqual(Array.from({ length: count }, (_, k) => 28_500 + k * 100));
      // A patch far from the copies: allowed only where the walk can prove it safe, and then zcat
      // shows exactly that change.
      const refusal = await patchFile(file, [{ offset: 100, data: Uint8Array.of(random[100]! ^ 0xff) }]).then(
        () => undefined,
        (error: SeekzError) => error.code,
      );
      if (count > MAX_REFERENCE_RANGES) {
        expect(refusal).toBe('GZIP_REFERENCED');
        continue;
      }
      expect(refusal).toBeUndefined();
      const expected = Buffer.from(input);
      expected[100]! ^= 0xff;
      ok(run('gzip', ['-t', file]), 'gzip -t');
      expect(ok(run('zcat', [file]), 'zcat').stdout.equals(expected)).toBe(true);
    }
  });

  it('property: inputs of repeated slices through real gzip -6, random patches: refused, or exactly the asked bytes change', async () => {
    let case_ = 0;
    let allowed = 0;
    let referenced = 0;
    let notStored = 0;
    const piece = fc.oneof(
      fc.record({ kind: fc.constant('random' as const), length: fc.integer({ min: 1, max: 30_000 }), seed: fc.integer({ min: 1, max: 1e9 }) }),
      fc.record({ kind: fc.constant('copy' as const), back: fc.integer({ min: 1, max: 40_000 }), length: fc.integer({ min: 3, max: 20_000 }) }),
      fc.record({ kind: fc.constant('copy' as const), back: fc.integer({ min: 8_000, max: 32_000 }), length: fc.integer({ min: 3, max: 300 }) }),
      fc.record({ kind: fc.constant('text' as const), length: fc.integer({ min: 1, max: 5000 }) }),
    );
    await fc.assert(
      fc.asyncProperty(
        // Incompressible data first, so that gzip -6 stores blocks that later pieces can copy.
        fc.tuple(fc.record({ kind: fc.constant('random' as const), length: fc.integer({ min: 20_000, max: 40_000 }), seed: fc.integer({ min: 1, max: 1e9 }) }), fc.array(piece, { maxLength: 8 })).map(([first, rest]) => [first, ...rest]),
        fc.integer({ min: 0, max: 3 }),
        fc.nat(),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 1e9 }),
        async (pieces, where, pick, length, seed) => {
          const parts: Uint8Array[] = [];
          let size = 0;
          for (const spec of pieces) {
            let bytes: Uint8Array;
            if (spec.kind === 'random') bytes = noise(spec.length, spec.seed);
            else if (spec.kind === 'text') bytes = new TextEncoder().encode('hello text '.repeat(Math.ceil(spec.length / 11)).slice(0, spec.length));
            else {
              const all = Buffer.concat(parts);
              const from = Math.max(0, all.length - spec.back);
              bytes = all.subarray(from, Math.min(all.length, from + spec.length));
            }
            parts.push(new Uint8Array(bytes));
            size += bytes.length;
          }
          const input = Buffer.concat(parts);
          if (input.length === 0) return;
          const file = path(`prop-${case_++}.gz`);
          writeFileSync(file, ok(run('gzip', ['-6', '-c'], { input }), 'gzip').stdout);
          const before = readFileSync(file);
          // Offsets: anywhere, in a stored block, in the editable part, or in stored bytes that are copied later.
          const stored: { start: number; end: number }[] = [];
          const source = await fileSource(file);
          try {
            for await (const block of walkDeflate(source, 10)) {
              if (block.type === 'stored' && block.outLength > 0) stored.push({ start: block.outStart, end: block.outStart + block.outLength });
            }
          } finally {
            await source.close();
          }
          const editable = (await readGzipLayout(bufferSource(before))).editableRanges();
          const copied = stored.flatMap((block) => {
            // Stored bytes outside the editable ranges: the ones later matches read.
            const pieces: { start: number; end: number }[] = [];
            let at = block.start;
            for (const range of editable) {
              if (range.end <= at || range.start >= block.end) continue;
              if (range.start > at) pieces.push({ start: at, end: range.start });
              at = Math.max(at, range.end);
            }
            if (at < block.end) pieces.push({ start: at, end: block.end });
            return pieces;
          });
          const ranges = [[], stored, editable, copied][where]!;
          const range = ranges[pick % Math.max(1, ranges.length)];
          const offset = range ? range.start + (pick % (range.end - range.start)) : pick % size;
          const edit = noise(Math.min(length, size - offset), seed);
          try {
            await patchFile(file, [{ offset, data: edit }]);
          } catch (error) {
            expect(error).toBeInstanceOf(SeekzError);
            expect(['GZIP_NOT_EDITABLE', 'GZIP_REFERENCED']).toContain((error as SeekzError).code);
            if ((error as SeekzError).code === "GZIP_REFERENCED") referenced++;
            else notStored++;
            expect(sha256(readFileSync(file)), 'a refused patch writes nothing').toBe(sha256(before));
            return;
          }
          allowed++;
          ok(run('gzip', ['-t', file]), 'gzip -t');
          const expected = Buffer.from(input);
          expected.set(edit, offset);
          const out = ok(run('zcat', [file]), 'zcat').stdout;
          expect(out.length).toBe(expected.length);
          expect(sha256(out), `patch of ${edit.length} bytes at ${offset}`).toBe(sha256(expected));
        },
      ),
      { numRuns: 100, seed: 88 },
    );
    console.log(`patch property: ${allowed} allowed, ${referenced} refused (copied later), ${notStored} refused (not stored)`);
    // The property means something only if both outcomes happened.
    expect(allowed).toBeGreaterThan(5);
    expect(referenced).toBeGreaterThan(5);
  }, 300_000);
});
