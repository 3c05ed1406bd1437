import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, watch, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { readGzipLayout } from '../src/gzip/layout.js';
import { combinedCrc, decodeMap, encodeMap, MAX_MAP_PAYLOAD, planRegions, reserveMapSize, STORED_UNIT, type MapPiece } from '../src/gzip/map.js';
import { crc32Combine } from '../src/crc/crc32.js';
import { partialDeflate, type Boundary } from '../src/gzip/partial-deflate.js';
import { openGzip } from '../src/gzip/reader.js';
import { patchFile } from '../src/edit/patch.js';
import { bufferSource } from '../src/source/buffer.js';
import { fileSource } from '../src/source/file.js';
import { sequentialFromSource } from '../src/source/sequential.js';
import { parseSize } from '../src/size.js';
import { cliPath, diskLikeData, requireTool, run, runCli, SYSTEM_PYTHON, tempDir } from './helpers/tools.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const CHUNK = 64 * 1024;

/** Compresses in memory through the library, collecting the file and the reported boundaries. */
async function compress(data: Uint8Array, options: Parameters<typeof partialDeflate>[2] = {}) {
  const parts: Uint8Array[] = [];
  let file = new Uint8Array(0);
  const boundaries: Boundary[] = [];
  const sink = {
    async write(bytes: Uint8Array) {
      parts.push(new Uint8Array(bytes));
    },
    async writeAt(offset: number, bytes: Uint8Array) {
      file = Buffer.concat(parts.splice(0));
      parts.push(file);
      file.set(bytes, offset);
    },
  };
  const result = await partialDeflate(sequentialFromSource(bufferSource(data)), sink, {
    chunkSize: CHUNK,
    threads: 2,
    ...options,
    onBoundary: (boundary) => boundaries.push(boundary),
  });
  file = Buffer.concat(parts);
  return { file, result, boundaries };
}

describe('parseSize', () => {
  it('reads the forms xz and qemu-img users type', () => {
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('0x1000')).toBe(4096);
    expect(parseSize('16M')).toBe(16 * 2 ** 20);
    expect(parseSize('16MiB')).toBe(16 * 2 ** 20);
    expect(parseSize('2G')).toBe(2 * 2 ** 30);
    expect(parseSize('1k')).toBe(1024);
    for (const bad of ['', '12Q', '-1', '1.5M', '0x', 'M']) {
      expect(() => parseSize(bad)).toThrowError(expect.objectContaining({ code: 'BAD_SIZE' }));
    }
  });
});

describe('partial-deflate output is standard gzip', () => {
  let dir: { path: string; remove: () => void };
  beforeAll(() => {
    requireTool('gzip', 'gzip');
    requireTool('pigz', 'pigz');
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  const cases: [string, number, { start: number; end: number }[]][] = [
    ['empty', 0, []],
    ['one byte', 1, []],
    ['chunk - 1', CHUNK - 1, []],
    ['chunk', CHUNK, []],
    ['chunk + 1', CHUNK + 1, []],
    ['stored middle', 5 * CHUNK + 123, [{ start: CHUNK + 7, end: 3 * CHUNK + 70000 }]],
    ['stored all', 200_000, [{ start: 0, end: 200_000 }]],
    ['stored start and end', 300_001, [{ start: 0, end: 10 }, { start: 290_000, end: 300_001 }]],
    ['stored overlapping ranges merge', 300_000, [{ start: 1000, end: 70_000 }, { start: 50_000, end: 140_000 }]],
  ];
  for (const [name, length, stored] of cases) {
    it(`${name}: gzip -t, zcat, pigz -t, Python gzip and our reader agree`, async () => {
      const data = diskLikeData(length, length + 1);
      const { file, result } = await compress(data, { stored });
      const path = join(dir.path, `${name.replace(/\W+/g, '-')}.gz`);
      writeFileSync(path, file);
      expect(run('gzip', ['-t', path]).status).toBe(0);
      expect(run('pigz', ['-t', path]).status).toBe(0);
      expect(sha256(run('gzip', ['-dc', path]).stdout)).toBe(sha256(data));
      const python = run(SYSTEM_PYTHON, ['-c', 'import gzip,sys,hashlib; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())', path]);
      expect(python.stdout.toString().trim()).toBe(sha256(data));
      expect(result.totalLength).toBe(length);
      expect(result.compressedLength).toBe(file.length);

      const layout = await readGzipLayout(bufferSource(file), { walk: false });
      const expected = planRegions(length, stored).filter((region) => region.kind === 'stored');
      expect(layout.editableRanges()).toEqual(expected.map((region) => ({ start: region.start, end: region.start + region.length })));
      expect(layout.totalLength).toBe(length);

      const reader = await openGzip(bufferSource(file));
      expect(reader.access).toBe('map');
      for (let probe = 0; probe < 40 && length > 0; probe++) {
        const offset = (probe * 7919 * 13) % length;
        const size = Math.min(length - offset, 1 + ((probe * 104729) % 150_000));
        expect(sha256(await reader.read(offset, size))).toBe(sha256(data.subarray(offset, offset + size)));
      }
    });
  }

  it('gives identical bytes for any thread count', async () => {
    const data = diskLikeData(2_000_000, 7);
    const stored = [{ start: 300_000, end: 900_000 }];
    const outputs = await Promise.all([1, 2, 3].map(async (threads) => sha256((await compress(data, { stored, threads })).file)));
    expect(new Set(outputs).size).toBe(1);
  });

  it('reports boundaries that tile the stream and match the map', async () => {
    const data = diskLikeData(1_000_000, 3);
    const { file, boundaries, result } = await compress(data, { stored: [{ start: 100_000, end: 400_000 }] });
    let uAt = 0;
    let cAt = 0;
    for (const boundary of boundaries) {
      expect(boundary.uStart).toBe(uAt);
      expect(boundary.cStart).toBe(cAt);
      uAt += boundary.uLength;
      cAt += boundary.cLength;
    }
    expect(uAt).toBe(data.length);
    // Every reported run, stored or compressed, is one segment of the map, with the same CRC-32.
    const segments = result.map!.segments.map(({ crcOffset: _, ...segment }) => segment);
    expect(segments).toEqual(boundaries);
    expect(boundaries.some((boundary) => boundary.kind === 'stored')).toBe(true);
    expect(file.length).toBe(result.headerLength + cAt + 2 + 8);
  });

  it('recognises all-zero chunks and emits them without deflating each again', async () => {
    const data = new Uint8Array(40 * CHUNK);
    data.set(diskLikeData(3 * CHUNK, 9), 10 * CHUNK);
    const { file, result } = await compress(data);
    expect(result.zeroChunks).toBe(37);
    expect(gunzipSync(file).equals(Buffer.from(data))).toBe(true);
  });

  it('never lets compressed data reference a stored range: editing its first and last 32 KiB changes nothing else', async () => {
    // Data that repeats across the stored range, so a matcher would love to reference it.
    const block = diskLikeData(100_000, 11);
    const data = new Uint8Array(1_000_000);
    for (let at = 0; at < data.length; at += block.length) data.set(block.subarray(0, Math.min(block.length, data.length - at)), at);
    const stored = { start: 200_000, end: 600_000 };
    const { file } = await compress(data, { stored: [stored] });
    const path = join(dir.path, 'backref.gz');
    writeFileSync(path, file);
    const head = diskLikeData(32 * 1024, 99).map((byte) => byte ^ 0x5a);
    const tail = diskLikeData(32 * 1024, 98).map((byte) => byte ^ 0xa5);
    await patchFile(path, [
      { offset: stored.start, data: head },
      { offset: stored.end - tail.length, data: tail },
    ]);
    const expected = new Uint8Array(data);
    expected.set(head, stored.start);
    expected.set(tail, stored.end - tail.length);
    expect(run('gzip', ['-t', path]).status).toBe(0);
    const decoded = run('gzip', ['-dc', path]).stdout;
    expect(decoded.length).toBe(expected.length);
    expect(sha256(decoded.subarray(0, stored.start))).toBe(sha256(data.subarray(0, stored.start)));
    expect(sha256(decoded.subarray(stored.end))).toBe(sha256(data.subarray(stored.end)));
    expect(sha256(decoded)).toBe(sha256(expected));
  });
});

describe('the seekz map', () => {
  it('thins checkpoints when there are too many to fit the 64 KiB FEXTRA limit, CRC-32s included', () => {
    const chunkSize = 4096;
    const storedLength = 3 * 2 ** 30 + 5; // 3073 stored units of about 1 MiB, 4 bytes of CRC each
    const compressedChunks = 40_000;
    const totalLength = compressedChunks * chunkSize + 17 + storedLength;
    const regions = planRegions(totalLength, [{ start: chunkSize * 100, end: chunkSize * 100 + storedLength }]);
    const pieces: MapPiece[] = [];
    let deflateLength = 2;
    for (const region of regions) {
      const unit = region.kind === 'compressed' ? chunkSize : STORED_UNIT;
      for (let at = 0; at < region.length; at += unit) {
        const uLength = Math.min(unit, region.length - at);
        const cLength = region.kind === 'compressed' ? 1000 + (pieces.length % 3000) : uLength + 5 * Math.ceil(uLength / 65535);
        pieces.push({ kind: region.kind, uLength, cLength, crc: (pieces.length * 2654435761) >>> 0 });
        deflateLength += cLength;
      }
    }
    const reserved = reserveMapSize(chunkSize, regions);
    expect(reserved).toBe(MAX_MAP_PAYLOAD);
    const payload = encodeMap({ chunkSize, totalLength, deflateLength, regions, pieces }, reserved);
    expect(payload.length).toBe(reserved);
    const map = decodeMap(payload, deflateLength)!;
    expect(map.groupChunks).toBeGreaterThan(1);
    expect(map.verified).toBe(true);
    expect(map.totalLength).toBe(totalLength);
    expect(map.regions).toEqual(regions);
    let cAt = 0;
    for (const segment of map.segments) {
      expect(segment.cStart).toBe(cAt);
      cAt += segment.cLength;
    }
    // The groups' CRC-32s combine to the CRC of everything, as the trailer's must.
    const whole = pieces.reduce((crc, piece) => crc32Combine(crc, piece.crc, piece.uLength), 0);
    expect(combinedCrc(map)).toBe(whole);
  });

  it('rejects damaged maps with GZIP_BAD_MAP and nothing else (fuzz)', async () => {
    const { file, result } = await compress(diskLikeData(600_000, 5), { stored: [{ start: 70_000, end: 300_000 }] });
    const mapStart = 16; // ID1 ID2 CM FLG MTIME XFL OS (10), XLEN (2), SI1 SI2 LEN (4)
    const payload = file.subarray(mapStart, result.headerLength);
    const deflateLength = file.length - result.headerLength - 8;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: payload.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const damaged = new Uint8Array(payload);
        damaged[at]! ^= flip;
        try {
          const map = decodeMap(damaged, deflateLength);
          // Padding bytes and compensating changes may still decode: then it must be self-consistent.
          if (map) expect(map.segments.reduce((sum, segment) => sum + segment.uLength, 0)).toBe(map.totalLength);
        } catch (error) {
          expect(error).toBeInstanceOf(SeekzError);
          expect((error as SeekzError).code).toBe('GZIP_BAD_MAP');
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('partial-deflate CLI', () => {
  let dir: { path: string; remove: () => void };
  let input: string;
  const data = diskLikeData(3_000_000, 21);
  beforeAll(() => {
    dir = tempDir();
    input = join(dir.path, 'in.img');
    writeFileSync(input, data);
  });
  afterAll(() => dir.remove());

  it('writes OUT with START END and refuses to overwrite without -f', () => {
    const out = join(dir.path, 'a.gz');
    expect(runCli('partial-deflate', ['-q', input, out, '1M', '2M']).status).toBe(0);
    expect(run('gzip', ['-t', out]).status).toBe(0);
    const again = runCli('partial-deflate', ['-q', input, out, '1M', '2M']);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already exists; use -f/);
    expect(runCli('partial-deflate', ['-q', '-f', '-9', input, out, '--store', '0:4K']).status).toBe(0);
    const info = runCli('seekz', ['info', out]).stdout.toString();
    expect(info).toMatch(/editable: \[0, 4096\)/);
  });

  it('streams stdin to stdout; a pipe gets a standard gzip without a filled map', () => {
    const piped = runCli('partial-deflate', ['-q', '-', '-', '100', '70000'], { input: data });
    expect(piped.status).toBe(0);
    expect(gunzipSync(piped.stdout).equals(Buffer.from(data))).toBe(true);
    const path = join(dir.path, 'piped.gz');
    writeFileSync(path, piped.stdout);
    // Without a map the stored blocks are still found, by walking the deflate stream.
    const info = runCli('seekz', ['info', path]);
    expect(info.stdout.toString()).toMatch(/editable: \[100, 65635\) \[65635, 70000\)|editable: \[100, 70000\)/);
    expect(info.stderr).toMatch(/no seekz map/);
  });

  it('leaves no output and no temp file when it fails', () => {
    const out = join(dir.path, 'fail.gz');
    const result = runCli('partial-deflate', ['-q', input, out, '1M', '100M']);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/runs past the end of the input/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir.path).filter((name) => name.includes('seekz'))).toEqual([]);
  });

  it('leaves no output and no temp file when interrupted with SIGINT', async () => {
    const big = join(dir.path, 'big.img');
    // Random data compresses slowly enough to be caught mid-way.
    writeFileSync(big, Buffer.concat(Array.from({ length: 12 }, (_, index) => Buffer.from(diskLikeData(8 << 20, 100 + index)))));
    const out = join(dir.path, 'interrupted.gz');
    const child = spawn(process.execPath, [cliPath('partial-deflate'), '-q', '-T', '1', '-9', big, out]);
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    // Interrupt once the temp output exists: the event, not a guess at how long start-up takes.
    const exited = new Promise<number | null>((resolve) => child.on('exit', (exitCode) => resolve(exitCode)));
    const hasTemp = () => readdirSync(dir.path).some((name) => name.endsWith('.tmp'));
    const watcher = watch(dir.path);
    const tempSeen = new Promise<void>((resolve) => {
      watcher.on('change', () => hasTemp() && resolve());
      if (hasTemp()) resolve();
    });
    const first = await Promise.race([tempSeen.then(() => 'temp' as const), exited.then(() => 'exit' as const)]);
    watcher.close();
    // It must still be running for this to test anything: 96 MiB at -9 on one thread takes seconds.
    expect(first).toBe('temp');
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/interrupted by SIGINT/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir.path).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('says what is wrong with bad arguments', () => {
    const bad = runCli('partial-deflate', [input, join(dir.path, 'x.gz'), '1Q', '2M']);
    expect(bad.status).toBe(1); // usage errors exit 1, as in xz
    expect(bad.stderr).toMatch(/cannot parse size '1Q'/);
    const half = runCli('partial-deflate', [input, join(dir.path, 'x.gz'), '1M']);
    expect(half.status).toBe(1);
    expect(half.stderr).toMatch(/both START and END/);
    const level = runCli('partial-deflate', ['--level', '11', input, join(dir.path, 'x.gz')]);
    expect(level.status).toBe(1);
  });

  it('help states the memory bound', () => {
    const help = runCli('partial-deflate', ['--help']).stdout.toString();
    expect(help).toMatch(/Memory: at most about .* chunk size;\n.*MiB at the defaults/);
  });

  it('file sizes in the map agree with the file on disk', async () => {
    const out = join(dir.path, 'sizes.gz');
    expect(runCli('partial-deflate', ['-q', input, out, '0', '1M']).status).toBe(0);
    const source = await fileSource(out);
    const layout = await readGzipLayout(source, { walk: false });
    expect(layout.fileSize).toBe(statSync(out).size);
    expect(layout.totalLength).toBe(data.length);
    await source.close();
  });
});
