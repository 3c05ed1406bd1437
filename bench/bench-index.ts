/**
 * The index section: random access into any gzip file, against the tools people use for it.
 * On one `pigz -6` file of the bench image: index build time (seekz index, with the addon and
 * with SEEKZ_NATIVE=0, against gztool and indexed_gzip), cold random 4 KiB reads
 * (openIndexedGzip against indexed_gzip, same 4 MiB spacing, each in its own process for peak
 * RSS), index size (seekz format against GZIDX for the same points), and cold random reads from a
 * partial-deflate file, which needs no index at all. Speed ratios: above 1, seekz is faster.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseIndex, serializeIndex } from '../src/gzip/index/formats.js';
import { openIndexedGzip } from '../src/gzip/index/indexed-reader.js';
import type { GzipIndex } from '../src/gzip/index/types.js';
import { findSegment } from '../src/gzip/map.js';
import { openGzip } from '../src/gzip/reader.js';
import { fileSource } from '../src/source/file.js';
import type { Source } from '../src/source/source.js';
import { zlibEngine } from '../src/native/zlib.js';
import { formatSize } from '../src/size.js';
import { MIB, cli, ms, percentile, seededRandom, type Bench, type Image } from './bench-common.js';
import { formatTable, measure, median, type Measurement } from './bench-measure.js';

const SPACING = 4 * MIB;
const READ_SIZE = 4096;
const PYTHON = '/usr/bin/python3';
/** indexed_gzip's default read-ahead (its BufferedReader): 4 × spacing when spacing is given. */
const INDEXED_GZIP_BUFFER = 4 * SPACING;

const INDEXED_GZIP_BUILD = `
import sys, indexed_gzip
path, out, spacing = sys.argv[1], sys.argv[2], int(sys.argv[3])
f = indexed_gzip.IndexedGzipFile(path, spacing=spacing)
f.build_full_index()
f.export_index(out)
f.close()
`;

/**
 * indexed_gzip's random reads, timed inside Python: the file opened with the index it exported,
 * an untimed first read, then seek + read per offset. Twice: with its default read-ahead (a
 * BufferedReader of 4 × spacing, what a user gets) and with buffer_size 4096 (no read-ahead).
 */
const INDEXED_GZIP_READS = `
import hashlib, json, os, sys, time, indexed_gzip
path, index, spacing = sys.argv[1], sys.argv[2], int(sys.argv[3])
offsets = json.loads(os.environ['SEEKZ_BENCH_OFFSETS'])
results = {}
import resource
for name, extra in (('default', {}), ('buffer4k', {'buffer_size': ${READ_SIZE}})):
    f = indexed_gzip.IndexedGzipFile(path, index_file=index, spacing=spacing, **extra)
    f.seek(offsets[0])
    f.read(${READ_SIZE})
    digest = hashlib.sha256()
    times = []
    for offset in offsets[1:]:
        started = time.perf_counter()
        f.seek(offset)
        data = f.read(${READ_SIZE})
        times.append(time.perf_counter() - started)
        digest.update(data)
    f.close()
    results[name] = {'times': times, 'sha256': digest.hexdigest()}
results['maxRss'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(results))
`;

export interface Reads {
  times: number[];
  sha256: string;
}

export async function indexSection(bench: Bench): Promise<void> {
  const image = bench.image!;
  if (!bench.quick && image.plan.size < 1024 * MIB) {
    console.log(`note: the goal is for ≥ 1 GiB of input; this image is ${formatSize(image.plan.size)} (--size 2G is the default)`);
  }
  const gz = join(bench.dir, 'index-pigz-6.gz');
  bench.scratch.push(gz);
  const made = await measure('pigz', ['-6', '-p2', '-c', image.path], { stdout: gz });
  const gzSize = statSync(gz).size;
  console.log(`pigz -6 -p2 of the image: ${gzSize} bytes (${formatSize(gzSize)}) in ${made.wall.toFixed(2)} s; spacing ${formatSize(SPACING)} everywhere`);
  console.log(`seekz's zlib engine: ${zlibEngine()}`);

  const build = await buildPart(bench, gz, gzSize);
  const ours = parseIndex(readFileSync(build.files.ours));
  const theirs = parseIndex(readFileSync(build.files.indexedGzip));
  const reads = await randomReadsPart(bench, image, gz, ours, theirs, build.files.indexedGzip);
  const size = sizePart(bench, ours, build.files);
  const partialDeflate = await partialDeflatePart(bench, image);
  bench.report.index = { gzip: { path: gz, bytes: gzSize, wall: made.wall }, spacing: SPACING, build: build.report, randomReads: reads, size, partialDeflate };
}

// ---- 1. index build

async function buildPart(bench: Bench, gz: string, gzSize: number) {
  const files = {
    ours: `${gz}.idx`,
    oursNode: join(bench.dir, 'index-seekz-node.idx'),
    gztool: join(bench.dir, 'index-gztool.gzi'),
    gztoolNoLines: join(bench.dir, 'index-gztool-z.gzi'),
    indexedGzip: join(bench.dir, 'index-indexed_gzip.gzidx'),
  };
  bench.scratch.push(...Object.values(files));
  const spanMib = String(SPACING / MIB); // gztool's -s is in MiB
  const builders = [
    { name: `seekz index --spacing ${spanMib}M`, file: files.ours, run: () => measure(process.execPath, [cli('seekz'), 'index', gz, '--spacing', `${spanMib}M`, '-o', files.ours, '-q', '-f']) },
    {
      name: `SEEKZ_NATIVE=0 seekz index (no addon)`,
      file: files.oursNode,
      run: () => withNative('0', () => measure(process.execPath, [cli('seekz'), 'index', gz, '--spacing', `${spanMib}M`, '-o', files.oursNode, '-q', '-f'])),
    },
    { name: `gztool -i -s ${spanMib}`, file: files.gztool, run: () => measure('gztool', ['-i', '-s', spanMib, '-I', files.gztool, gz]) },
    { name: `gztool -i -z -s ${spanMib} (no line numbers)`, file: files.gztoolNoLines, run: () => measure('gztool', ['-i', '-z', '-s', spanMib, '-I', files.gztoolNoLines, gz]) },
    { name: 'indexed_gzip build_full_index', file: files.indexedGzip, run: () => measure(PYTHON, ['-c', INDEXED_GZIP_BUILD, gz, files.indexedGzip, String(SPACING)]) },
  ];
  const walls: number[][] = builders.map(() => []);
  const rss: number[] = builders.map(() => 0);
  const cpu: number[][] = builders.map(() => []);
  console.log(`\nbuilding indexes of ${gz}, ${bench.repeat} run(s) each, round-robin:`);
  for (let round = 0; round < bench.repeat; round++) {
    for (const [index, builder] of builders.entries()) {
      // gztool completes an index it finds instead of building one: start from nothing.
      rmSync(builder.file, { force: true });
      const run: Measurement = await builder.run();
      walls[index]!.push(run.wall);
      cpu[index]!.push(run.cpu);
      rss[index] = Math.max(rss[index]!, run.rss);
      console.log(`  ${builder.name}: ${run.wall.toFixed(2)} s`);
    }
  }
  const results = builders.map((builder, index) => {
    const wall = median(walls[index]!);
    return {
      name: builder.name,
      walls: walls[index]!,
      wall,
      cpu: median(cpu[index]!),
      rss: rss[index]!,
      mibPerSecond: gzSize / MIB / wall,
      indexBytes: statSync(builder.file).size,
      points: parseIndex(readFileSync(builder.file)).points.length,
    };
  });
  const [ours, oursNode, gztool, gztoolNoLines, indexedGzip] = results as [typeof results[0], typeof results[0], typeof results[0], typeof results[0], typeof results[0]];
  const ratio = gztool.wall / ours.wall;
  console.log(
    `\n${formatTable(
      ['indexer', 'wall s', 'cpu s', 'MiB/s of .gz', 'peak RSS', 'index bytes', 'points', 'speed vs seekz'],
      results.map((result) => [
        result.name,
        result.wall.toFixed(2),
        result.cpu.toFixed(2),
        result.mibPerSecond.toFixed(1),
        formatSize(result.rss),
        String(result.indexBytes),
        String(result.points),
        result === ours ? '1' : (result.wall / ours.wall).toFixed(3),
      ]),
    )}`,
  );
  const ratioNoLines = gztoolNoLines.wall / ours.wall;
  console.log(
    `speed ratio (above 1: seekz faster) gztool -i -s ${spanMib} / seekz index: ${ratio.toFixed(3)}; gztool -z (neither counts lines): ${ratioNoLines.toFixed(3)}; ` +
      `indexed_gzip: ${(indexedGzip.wall / ours.wall).toFixed(3)}; without the addon: ${(gztool.wall / oursNode.wall).toFixed(3)}\n` +
      `(every wall is a whole process: Node's and Python's start-up are in theirs, gztool has none)`,
  );
  bench.targets.push({ what: `index build: speed seekz index / gztool -i -s ${spanMib} (same file)`, goal: '≥ 1.50', measured: ratio.toFixed(3), pass: ratio >= 1.5 });
  return { files, report: { tools: results, engine: zlibEngine(), ratios: { vsGztool: ratio, vsGztoolNoLines: ratioNoLines, vsIndexedGzip: indexedGzip.wall / ours.wall, noAddonVsGztool: gztool.wall / oursNode.wall } } };
}

// ---- 2. cold random 4 KiB reads

async function randomReadsPart(bench: Bench, image: Image, gz: string, ours: GzipIndex, theirs: GzipIndex, theirIndexFile: string) {
  const wanted = bench.quick ? 30 : 100;
  const offsets = coldOffsets(bench.seed, image.plan.size, wanted + 1, [ours, theirs]);
  const reads = offsets.length - 1;
  console.log(
    `\nrandom ${READ_SIZE}-byte reads at ${reads} uniform 4 KiB-aligned offsets${reads < wanted ? ` (only ${reads} fresh ones exist; ${wanted} wanted)` : ''},\n` +
      `each in a span (point to next point) that no earlier read touched, by our points and by indexed_gzip's, and never in the\n` +
      `${formatSize(INDEXED_GZIP_BUFFER)} that indexed_gzip's read-ahead holds after the previous read: every read decodes.\n` +
      `openIndexedGzip with cacheSize 1 in a node process, indexed_gzip in ${PYTHON}, each timed inside; the first read of each is untimed;\n` +
      `${bench.repeat} round(s), alternating, times pooled.`,
  );
  // Rounds alternate between the two processes, so that a change in the machine's load falls on both.
  const rounds = Array.from({ length: bench.repeat }, () => {
    const ours = ourReadsInChild(gz, offsets);
    const theirs = JSON.parse(
      execFileSync(PYTHON, ['-c', INDEXED_GZIP_READS, gz, theirIndexFile, String(SPACING)], {
        encoding: 'utf8',
        env: { ...process.env, SEEKZ_BENCH_OFFSETS: JSON.stringify(offsets) },
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 64 * MIB,
      }),
    ) as Record<'default' | 'buffer4k', Reads> & { maxRss: number };
    return { ours, theirs };
  });
  const pool = <T extends Reads>(all: T[]): T => ({ ...all[0]!, times: all.flatMap((reads) => reads.times) });
  const library = { ...pool(rounds.map((round) => round.ours)), maxRss: Math.max(...rounds.map((round) => round.ours.maxRss)) };
  const python = {
    default: pool(rounds.map((round) => round.theirs.default)),
    buffer4k: pool(rounds.map((round) => round.theirs.buffer4k)),
    maxRss: Math.max(...rounds.map((round) => round.theirs.maxRss)),
  };
  const rows = [
    ['openIndexedGzip (cacheSize 1)', library],
    [`indexed_gzip, default read-ahead (${formatSize(INDEXED_GZIP_BUFFER)})`, python.default],
    ['indexed_gzip, buffer_size 4096', python.buffer4k],
  ] as const;
  const rssOf = (reads: Reads) => (reads === library ? library.maxRss : python.maxRss);
  console.log(
    `\n${formatTable(
      ['reader', 'p50 ms', 'p90 ms', 'reads', 'peak RSS of its process'],
      rows.map(([name, times]) => [name, ms(median(times.times)), ms(percentile(times.times, 0.9)), String(times.times.length), formatSize(rssOf(times))]),
    )}`,
  );
  const same = library.sha256 === python.default.sha256 && library.sha256 === python.buffer4k.sha256;
  if (!same) process.exitCode = 1;
  // The target is against indexed_gzip at its faster setting, whichever that is on this machine.
  const theirBest = Math.min(median(python.default.times), median(python.buffer4k.times));
  const ratio = median(library.times) / theirBest;
  console.log(
    `all readers returned the same bytes: ${same ? 'yes' : 'NO'}\n` +
      `p50 time openIndexedGzip / indexed_gzip (its faster setting): ${ratio.toFixed(3)}; speed ratio (above 1: seekz faster): ${(1 / ratio).toFixed(3)}`,
  );
  bench.targets.push(
    { what: 'index random 4 KiB: p50 time openIndexedGzip / indexed_gzip (cold, 4 MiB spacing)', goal: '≤ 0.80', measured: ratio.toFixed(3), pass: ratio <= 0.8 },
    { what: 'index random 4 KiB: same bytes as indexed_gzip', goal: 'yes', measured: same ? 'yes' : 'NO', pass: same },
  );
  return { offsets: offsets.slice(1), library, indexedGzip: python, ratio, sameBytes: same };
}

/**
 * Uniform 4 KiB-aligned offsets where no two share a span of any of INDEXES, and none falls in
 * indexed_gzip's read-ahead of the one before. The first is the untimed warm-up read.
 */
function coldOffsets(seed: number, size: number, count: number, indexes: GzipIndex[]): number[] {
  const random = seededRandom(seed);
  const slots = Math.floor(size / READ_SIZE);
  const used = indexes.map(() => new Set<number>());
  const offsets: number[] = [];
  for (let attempt = 0; attempt < count * 1000 && offsets.length < count; attempt++) {
    const offset = Math.floor(random() * slots) * READ_SIZE;
    const spans = indexes.map((index) => spanOf(index, offset));
    if (spans.some((span, which) => used[which]!.has(span) || span !== spanOf(indexes[which]!, offset + READ_SIZE - 1))) continue;
    const previous = offsets[offsets.length - 1];
    if (previous !== undefined && offset >= previous && offset < previous + INDEXED_GZIP_BUFFER) continue;
    spans.forEach((span, which) => used[which]!.add(span));
    offsets.push(offset);
  }
  return offsets;
}

/** The number of the last point at or before OFFSET. */
function spanOf(index: GzipIndex, offset: number): number {
  let low = 0;
  let high = index.points.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >>> 1;
    if (index.points[middle]!.uOffset <= offset) low = middle;
    else high = middle - 1;
  }
  return low;
}

/** libraryReads in a child process of its own (bench/index-reads.ts), so that its peak RSS is its own. */
function ourReadsInChild(gz: string, offsets: number[]): Reads & { maxRss: number } {
  const child = fileURLToPath(new URL('./index-reads.js', import.meta.url));
  return JSON.parse(
    execFileSync(process.execPath, [child, gz, `${gz}.idx`], {
      encoding: 'utf8',
      env: { ...process.env, SEEKZ_BENCH_OFFSETS: JSON.stringify(offsets) },
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 64 * MIB,
    }),
  ) as Reads & { maxRss: number };
}

async function withNative<T>(value: string, work: () => Promise<T>): Promise<T> {
  const saved = process.env.SEEKZ_NATIVE;
  process.env.SEEKZ_NATIVE = value;
  try {
    return await work();
  } finally {
    if (saved === undefined) delete process.env.SEEKZ_NATIVE;
    else process.env.SEEKZ_NATIVE = saved;
  }
}

export async function libraryReads(gz: string, index: GzipIndex, offsets: number[]): Promise<Reads> {
  // cacheSize 1 keeps only the newest span (block-cache.ts), and no two reads share one.
  const reader = openIndexedGzip(await fileSource(gz), index, { cacheSize: 1 });
  const digest = createHash('sha256');
  const times: number[] = [];
  try {
    await reader.read(offsets[0]!, READ_SIZE);
    for (const offset of offsets.slice(1)) {
      const decodes = reader.decodes;
      const started = process.hrtime.bigint();
      const data = await reader.read(offset, READ_SIZE);
      times.push(Number(process.hrtime.bigint() - started) / 1e9);
      if (reader.decodes !== decodes + 1) throw new Error(`bench: the read at ${offset} decoded ${reader.decodes - decodes} spans, expected 1`);
      digest.update(data);
    }
  } finally {
    await reader.close?.();
  }
  return { times, sha256: digest.digest('hex') };
}

// ---- 3. index size

function sizePart(bench: Bench, ours: GzipIndex, files: { ours: string; gztool: string; gztoolNoLines: string; indexedGzip: string }) {
  const seekzBytes = statSync(files.ours).size;
  const gzidxBytes = serializeIndex(ours, 'gzidx').length;
  const sizes = {
    seekzBytes,
    gzidxSamePointsBytes: gzidxBytes,
    indexedGzipExportBytes: statSync(files.indexedGzip).size,
    gztoolBytes: statSync(files.gztool).size,
    gztoolNoLinesBytes: statSync(files.gztoolNoLines).size,
    points: ours.points.length,
  };
  const ratio = seekzBytes / gzidxBytes;
  console.log(
    `\nindex size, ${ours.points.length} points: seekz format ${seekzBytes} bytes; GZIDX of the same points (serializeIndex) ${gzidxBytes} bytes;\n` +
      `indexed_gzip's own export ${sizes.indexedGzipExportBytes} bytes; gztool ${sizes.gztoolBytes} bytes (-z: ${sizes.gztoolNoLinesBytes})\n` +
      `size seekz / GZIDX (same points): ${ratio.toFixed(3)}; / indexed_gzip's export: ${(seekzBytes / sizes.indexedGzipExportBytes).toFixed(3)}; / gztool: ${(seekzBytes / sizes.gztoolBytes).toFixed(3)}`,
  );
  bench.targets.push({ what: 'index size: seekz format / GZIDX, same points', goal: '≤ 0.50', measured: ratio.toFixed(3), pass: ratio <= 0.5 });
  return { ...sizes, ratio };
}

// ---- 4. partial-deflate: random reads with no index file

async function partialDeflatePart(bench: Bench, image: Image) {
  let file = bench.compression?.[0]?.kept;
  if (file) {
    console.log(`\npartial-deflate file: reusing the gzip section's ${file}`);
  } else {
    file = join(bench.dir, 'index-partial-deflate.gz');
    bench.scratch.push(file);
    const made = await measure(process.execPath, [cli('partial-deflate'), '-q', '-f', image.path, file]);
    console.log(`\npartial-deflate -q of the image: ${formatSize(statSync(file).size)} in ${made.wall.toFixed(2)} s`);
  }
  const count = bench.quick ? 30 : 100;
  const random = seededRandom(bench.seed + 1);
  const slots = Math.floor(image.plan.size / READ_SIZE);
  const offsets = Array.from({ length: count + 1 }, () => Math.floor(random() * slots) * READ_SIZE);
  const imageSource = await fileSource(image.path);
  const fresh: number[] = [];
  const kept: number[] = [];
  let segments = 0;
  let wrong = 0;
  try {
    // A new open per read: the header, the map and one segment, nothing carried over.
    for (const [index, offset] of offsets.entries()) {
      const started = process.hrtime.bigint();
      const source = await fileSource(file);
      const reader = await openGzip(source);
      const data = await reader.read(offset, READ_SIZE);
      await source.close();
      const time = Number(process.hrtime.bigint() - started) / 1e9;
      if (reader.access !== 'map') throw new Error(`bench: ${file} opened by ${reader.access}, not by its seekz map`);
      segments = reader.map!.segments.length;
      if (index > 0) fresh.push(time); // the first one pays for loading code
      if (!(await sameAsImage(imageSource, offset, data))) wrong++;
    }
    // One open, reads in another segment than the one before: the reader keeps one decoded segment.
    const source = await fileSource(file);
    try {
      const reader = await openGzip(source);
      let previous = -1;
      for (const offset of offsets) {
        const segment = findSegment(reader.map!.segments, offset);
        if (segment === previous) continue;
        const started = process.hrtime.bigint();
        const data = await reader.read(offset, READ_SIZE);
        if (previous >= 0) kept.push(Number(process.hrtime.bigint() - started) / 1e9);
        previous = segment;
        if (!(await sameAsImage(imageSource, offset, data))) wrong++;
      }
    } finally {
      await source.close();
    }
  } finally {
    await imageSource.close();
  }
  console.log(
    `random ${READ_SIZE}-byte reads through openGzip with no index file (its seekz map: ${segments} segments):\n` +
      formatTable(
        ['reader', 'p50 ms', 'p90 ms', 'reads'],
        [
          ['a new open per read (open + read)', ms(median(fresh)), ms(percentile(fresh, 0.9)), String(fresh.length)],
          ['one open, each read in another segment', ms(median(kept)), ms(percentile(kept, 0.9)), String(kept.length)],
        ],
      ) +
      `\nbytes equal to the image's: ${wrong === 0 ? 'all' : `${wrong} reads WRONG`}`,
  );
  if (wrong > 0) process.exitCode = 1;
  const p50 = median(fresh);
  bench.targets.push(
    { what: 'partial-deflate random 4 KiB, no index: p50 (new open per read)', goal: '≤ 10 ms', measured: `${ms(p50)} ms`, pass: p50 <= 0.01 && wrong === 0 },
  );
  return { file, segments, reads: { newOpenPerRead: fresh, oneOpen: kept }, wrongReads: wrong };
}

async function sameAsImage(image: Source, offset: number, data: Uint8Array): Promise<boolean> {
  return Buffer.from(await image.read(offset, data.length)).equals(data);
}
