/**
 * The xz section: seekxz against xz 5.4 and pixz on the bench image, compressing (-6, 16 MiB
 * blocks, 2 threads) and decompressing; the same against xz on a second, no-zeros image (data
 * everywhere, so no zero block to skip: the engines' own speed and memory); then random 4 KiB
 * reads through openXz and seekz serve against nbdkit's xz filter, the servers read by one real
 * NBD client (libnbd's Python binding). Speed ratios are peer time / seekz time: above 1, seekz
 * is faster. The engine in use (native addon or node-liblzma) is printed first.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { fileSource } from '../src/source/file.js';
import { formatSize } from '../src/size.js';
import { isAllZero } from '../src/zeros.js';
import { describeEngines } from '../src/native/xz-engine.js';
import { DEFAULT_CACHE_SIZE, openXz } from '../src/xz/reader.js';
import { xzWriterMemoryBound } from '../src/xz/writer.js';
import {
  MIB,
  cli,
  noZerosImageSize,
  compareTools,
  describeImage,
  diskImage,
  helpParagraph,
  mib,
  ms,
  percent,
  percentile,
  seededRandom,
  succeeds,
  type Bench,
  type Image,
  type Target,
  type Tool,
  type ToolResult,
} from './bench-common.js';
import { formatTable, median } from './bench-measure.js';

const THREADS = 2;
const PRESET = 6;
const BLOCK_SIZE = 16 * MIB;
const READ_SIZE = 4096;
/** The brief's memory goal for compressing: threads × 3 × block + 64 MiB. */
const RSS_GOAL = THREADS * 3 * BLOCK_SIZE + 64 * MIB;

const SEEKXZ: Tool = {
  name: 'seekxz -6 -T2',
  command: process.execPath,
  args: (input) => [cli('seekxz'), `-${PRESET}`, `-T${THREADS}`, '--block-size=16MiB', '-c', input],
  toStdout: true,
};
const XZ: Tool = { name: 'xz -6 -T2', command: 'xz', args: (input) => [`-${PRESET}`, `-T${THREADS}`, '--block-size=16MiB', '-c', input], toStdout: true };
// pixz has no block-size option: its blocks are twice the dictionary, 16 MiB at -6. -t: not a tarball.
const PIXZ: Tool = { name: 'pixz -6 -p2', command: 'pixz', args: (input, output) => [`-${PRESET}`, `-p${THREADS}`, '-t', '-i', input, '-o', output], toStdout: false };

const SEEKXZ_D: Tool = { name: 'seekxz -d -T2', command: process.execPath, args: (input) => [cli('seekxz'), '-d', '-c', `-T${THREADS}`, input], toStdout: true };
const XZ_D2: Tool = { name: 'xz -d -T2', command: 'xz', args: (input) => ['-d', '-T2', '-c', input], toStdout: true };
const XZ_D1: Tool = { name: 'xz -d -T1', command: 'xz', args: (input) => ['-d', '-T1', '-c', input], toStdout: true };

const XZ_OUTPUT = { suffix: 'xz', verify: { name: 'xz -t', check: (path: string) => succeeds('xz', ['-t', path]) } };

export async function xzSection(bench: Bench): Promise<void> {
  const image = bench.image!;
  console.log(`xz engine: ${describeEngines().xz}`);
  const compression = await compressionPart(bench, image);
  const ours = compression.results[0]!.kept!;
  const theirs = compression.results[1]!.kept!;
  const decompression = await decompressionPart(bench, image, ours, theirs, { imageName: 'generated image', goalVsT2: 2, withT1: true });
  const noZeros = await noZerosPart(bench);
  const reads = await randomReadsPart(bench, image, ours, theirs);
  bench.report.xz = {
    image: image.path,
    threads: THREADS,
    preset: PRESET,
    blockSize: BLOCK_SIZE,
    engines: describeEngines(),
    compression: compression.report,
    decompression,
    noZeros,
    randomReads: reads,
  };
}

// ---- compression

async function compressionPart(bench: Bench, image: Image) {
  console.log(`compressing at -${PRESET}, ${formatSize(BLOCK_SIZE)} blocks, ${THREADS} threads (pixz for reference: 16 MiB blocks at -6 by its own rule)`);
  const results = await compareTools(bench, image, [SEEKXZ, XZ, PIXZ], { ...XZ_OUTPUT, label: 'xz', keep: [SEEKXZ, XZ] });
  const [seekxz, xz] = results as [ToolResult, ToolResult, ToolResult];
  const speed = xz.wall / seekxz.wall;
  const cpu = seekxz.cpu / xz.cpu;
  const size = seekxz.bytes / xz.bytes;
  const helpMemory = helpParagraph('seekxz', 'Memory while compressing');
  const helpBytes = xzWriterMemoryBound(THREADS, BLOCK_SIZE, PRESET);

  let zerosImage = image;
  let zeroSpeed = speed;
  if (image.zeroShare >= 0.5) {
    console.log(`\nthe image is ${percent(image.zeroShare)} zeros (≥ 50 %), so the runs above are the zeros measurement too`);
  } else {
    console.log(`\nthe image is only ${percent(image.zeroShare)} zeros: making a second one with data fraction 0.2`);
    zerosImage = await diskImage(bench, 0.2);
    const [ourZeros, xzZeros] = (await compareTools(bench, zerosImage, [SEEKXZ, XZ], { ...XZ_OUTPUT, label: 'xz-zeros' })) as [ToolResult, ToolResult];
    zeroSpeed = xzZeros.wall / ourZeros.wall;
  }
  const zeros = await zeroShares(zerosImage.path);
  console.log(
    `  all-zero ${formatSize(BLOCK_SIZE)} blocks (what seekxz encodes once and reuses): ${zeros.blocks.zero} of ${zeros.blocks.total}; ` +
      `all-zero 1 MiB pieces: ${zeros.pieces.zero} of ${zeros.pieces.total} (${percent(zeros.pieces.zero / zeros.pieces.total)})`,
  );

  console.log(
    `\nthroughput seekxz / xz -6 -T2: ${speed.toFixed(3)}\n` +
      `CPU s      seekxz / xz -6 -T2: ${cpu.toFixed(3)} (lower is better; comparable when other work shares the cores)\n` +
      `size       seekxz / xz -6 -T2: ${size.toFixed(4)} (${seekxz.bytes} vs ${xz.bytes} bytes)\n` +
      `zeros: seekxz is ${zeroSpeed.toFixed(2)}× as fast as xz -6 -T2 on an image with ${percent(zerosImage.zeroShare)} zeros\n` +
      `peak RSS seekxz: ${mib(seekxz.rss)} MiB; goal threads × 3 × block + 64 MiB = ${mib(RSS_GOAL)} MiB\n` +
      `  --help says: ${helpMemory}\n` +
      `  (= ${mib(helpBytes)} MiB by xzWriterMemoryBound at ${THREADS} threads, -${PRESET}, ${formatSize(BLOCK_SIZE)} blocks; the goal leaves out the encoders)`,
  );
  bench.targets.push(
    { what: 'xz: throughput seekxz / xz -6 -T2', goal: '≥ 1.00', measured: speed.toFixed(3), pass: speed >= 1 },
    { what: 'xz: size seekxz / xz -6 -T2', goal: '≤ 1.005', measured: size.toFixed(4), pass: size <= 1.005 },
    { what: `xz zeros: throughput vs xz -6 -T2 (${percent(zerosImage.zeroShare)} zeros)`, goal: '≥ 3.00×', measured: `${zeroSpeed.toFixed(2)}×`, pass: zeroSpeed >= 3 },
    rssTarget('generated image', seekxz, xz),
  );
  return {
    results,
    report: {
      tools: results.map(({ kept, ...result }) => result),
      ratios: { speed, cpu, size, zeroSpeed },
      zeros: { reusedImage: zerosImage === image, image: describeImage(zerosImage), wholeBlocks: zeros.blocks, mibPieces: zeros.pieces },
      memory: { peakRss: seekxz.rss, goalBytes: RSS_GOAL, help: helpMemory, helpBytes },
    },
  };
}

/**
 * How much of an image is zero at the granularity seekxz skips (whole 16 MiB blocks) and at
 * 1 MiB: the zeros target depends on the first, and the image's zeros lie between 1-8 MiB islands.
 */
async function zeroShares(path: string) {
  const source = await fileSource(path);
  const blocks = { zero: 0, total: 0 };
  const pieces = { zero: 0, total: 0 };
  try {
    const buffer = new Uint8Array(BLOCK_SIZE);
    for (let offset = 0; offset < source.size; offset += BLOCK_SIZE) {
      const data = buffer.subarray(0, await source.readInto!(buffer, offset));
      blocks.total++;
      if (isAllZero(data)) blocks.zero++;
      for (let at = 0; at < data.length; at += MIB) {
        pieces.total++;
        if (isAllZero(data.subarray(at, at + MIB))) pieces.zero++;
      }
    }
  } finally {
    await source.close();
  }
  return { blocks, pieces };
}

// ---- decompression

interface DecompressionPlan {
  /** How the rows name the image. */
  imageName: string;
  /** The speed ratio seekxz -d -T2 must reach against xz -d -T2. */
  goalVsT2: number;
  /** Also run xz -d -T1 (for the CPU-per-byte comparison). */
  withT1: boolean;
}

async function decompressionPart(bench: Bench, image: Image, ours: string, theirs: string, plan: DecompressionPlan) {
  const report: Record<string, unknown> = {};
  const files = [
    { name: 'seekxz', label: 'ours', path: ours },
    { name: 'xz -T2', label: 'xz', path: theirs },
  ];
  for (const file of files) {
    console.log(`\ndecompressing the file ${file.name} wrote (${formatSize(statSync(file.path).size)}), output checked with cmp against the image`);
    const results = await compareTools(bench, image, plan.withT1 ? [SEEKXZ_D, XZ_D2, XZ_D1] : [SEEKXZ_D, XZ_D2], {
      label: `xz-d-${image.dataFraction}-${file.label}`,
      suffix: 'raw',
      input: file.path,
      verify: { name: 'cmp', check: (output) => succeeds('cmp', ['-s', output, image.path]) },
    });
    const [seekxz, xz2, xz1] = results as [ToolResult, ToolResult, ToolResult | undefined];
    const vsT2 = xz2.wall / seekxz.wall;
    const rss = seekxz.rss / xz2.rss;
    console.log(`speed seekxz -d -T2 / xz -d -T2: ${vsT2.toFixed(3)} (above 1: seekxz faster); peak RSS seekxz / xz -d -T2: ${rss.toFixed(2)}`);
    bench.targets.push({
      what: `xz -d, ${plan.imageName}: speed seekxz -d -T2 / xz -d -T2 (${file.name}'s file)`,
      goal: `≥ ${plan.goalVsT2.toFixed(2)}`,
      measured: `${vsT2.toFixed(3)} (CPU s ${seekxz.cpu.toFixed(2)} / ${xz2.cpu.toFixed(2)}; peak RSS ${mib(seekxz.rss)} / ${mib(xz2.rss)} MiB)`,
      pass: vsT2 >= plan.goalVsT2,
    });
    let vsT1: number | undefined;
    let cpuVsT1: number | undefined;
    if (xz1) {
      vsT1 = xz1.wall / seekxz.wall;
      cpuVsT1 = seekxz.cpu / xz1.cpu;
      console.log(`speed seekxz -d -T2 / xz -d -T1: ${vsT1.toFixed(3)}; CPU s seekxz / xz -d -T1: ${cpuVsT1.toFixed(3)} (on 2 cores, 1.8× needs this ≤ 1.11 = 2 / 1.8)`);
      bench.targets.push({ what: `xz -d, ${plan.imageName}: speed seekxz / xz -d -T1 (${file.name}'s file)`, goal: '≥ 1.80', measured: vsT1.toFixed(3), pass: vsT1 >= 1.8 });
    }
    report[file.label] = { file: file.path, tools: results, ratios: { vsT2, vsT1, cpuVsT1, rss } };
  }
  return report;
}

// ---- the no-zeros image

/** Compressing and decompressing an image with no zero blocks to skip: the engines' own speed, and memory. */
async function noZerosPart(bench: Bench) {
  const image = await diskImage(bench, 1, noZerosImageSize(bench));
  console.log(`\nthe no-zeros image (${percent(image.zeroShare)} zeros): compressing at -${PRESET}, ${formatSize(BLOCK_SIZE)} blocks, ${THREADS} threads`);
  const results = await compareTools(bench, image, [SEEKXZ, XZ], { ...XZ_OUTPUT, label: 'xz-nozeros', keep: [SEEKXZ, XZ] });
  const [seekxz, xz] = results as [ToolResult, ToolResult];
  const speed = xz.wall / seekxz.wall;
  console.log(`speed seekxz -6 -T2 / xz -6 -T2: ${speed.toFixed(3)}; peak RSS seekxz / xz: ${(seekxz.rss / xz.rss).toFixed(2)} (${mib(seekxz.rss)} vs ${mib(xz.rss)} MiB)`);
  bench.targets.push(
    { what: 'xz, no-zeros image: speed seekxz -6 -T2 / xz -6 -T2', goal: '≥ 1.00', measured: speed.toFixed(3), pass: speed >= 1 },
    rssTarget('no-zeros image', seekxz, xz),
  );
  const decompression = await decompressionPart(bench, image, seekxz.kept!, xz.kept!, { imageName: 'no-zeros image', goalVsT2: 1, withT1: false });
  return { image: describeImage(image), compression: results.map(({ kept, ...result }) => result), ratios: { speed, rss: seekxz.rss / xz.rss }, decompression };
}

/** The memory target of compressing: seekxz's peak RSS at most 1.2 × xz's, same image, same run. */
function rssTarget(imageName: string, seekxz: ToolResult, xz: ToolResult): Target {
  const ratio = seekxz.rss / xz.rss;
  const speed = xz.wall / seekxz.wall;
  return {
    what: `xz, ${imageName}: peak RSS seekxz -6 -T2 / xz -6 -T2, at speed ≥ 1.0`,
    goal: '≤ 1.20',
    measured: `${ratio.toFixed(2)} (${mib(seekxz.rss)} / ${mib(xz.rss)} MiB; speed ${speed.toFixed(3)}, CPU s ${seekxz.cpu.toFixed(2)} / ${xz.cpu.toFixed(2)})`,
    pass: ratio <= 1.2 && speed >= 1,
  };
}

// ---- random 4 KiB reads

interface ReadTimes {
  cold: number[];
  warm: number[];
  /** sha256 of the cold reads' bytes in order, so that both readers can be checked against each other. */
  sha256: string;
}

/**
 * libnbd's Python binding, run by `nbdkit --run`: one connection, an untimed first read (so
 * neither side pays start-up in the numbers), then each offset twice, timing both reads.
 */
const NBD_CLIENT = `
import hashlib, json, os, sys, time, nbd
offsets = json.loads(os.environ['SEEKZ_BENCH_OFFSETS'])
h = nbd.NBD()
h.connect_unix(sys.argv[1])
h.pread(${READ_SIZE}, offsets[0])
digest = hashlib.sha256()
cold, warm = [], []
for offset in offsets[1:]:
    started = time.perf_counter()
    data = h.pread(${READ_SIZE}, offset)
    cold.append(time.perf_counter() - started)
    started = time.perf_counter()
    h.pread(${READ_SIZE}, offset)
    warm.append(time.perf_counter() - started)
    digest.update(data)
h.shutdown()
print(json.dumps({'cold': cold, 'warm': warm, 'sha256': digest.hexdigest()}))
`;
const RUN_CLIENT = 'exec /usr/bin/python3 -c "$SEEKZ_BENCH_NBD_CLIENT" "$unixsocket"';

async function randomReadsPart(bench: Bench, image: Image, ours: string, theirs: string) {
  const coldCount = bench.quick ? 20 : 50;
  const warmCount = bench.quick ? 50 : 200;
  const blocks = Math.ceil(image.plan.size / BLOCK_SIZE);
  // seekz serve is asked for a one-block cache like the others, but its --cache is not applied
  // yet: it keeps the default LRU of this many blocks. A read whose block is none of the last
  // that many reads' blocks misses either way.
  const serveCacheBlocks = Math.floor(DEFAULT_CACHE_SIZE / BLOCK_SIZE);
  const distinct = Math.min(serveCacheBlocks, blocks - 1);
  const offsets = randomOffsets(bench.seed, image.plan.size, warmCount + 1, distinct);
  console.log(
    `\nrandom ${READ_SIZE}-byte reads at uniform 4 KiB-aligned offsets, each in another ${formatSize(BLOCK_SIZE)} block than the ${distinct} reads before,\n` +
      `so that every first read of an offset decodes a block: openXz with cacheSize 0 (one block kept), nbdkit with\n` +
      `xz-max-depth=1, and seekz serve --cache=${BLOCK_SIZE} (not applied: it keeps its ${formatSize(DEFAULT_CACHE_SIZE)} LRU (${serveCacheBlocks} blocks${distinct < serveCacheBlocks ? `; the image has only ${blocks}, so some of its reads hit` : ''})).\n` +
      `cold: those reads (${coldCount}); warm: the same offset again at once, the second read timed.\n` +
      `openXz is timed in this process; nbdkit --filter=xz and seekz serve through libnbd's Python client\n` +
      `(nbd.NBD().pread over a Unix socket), timed inside Python: the last two compare like with like.`,
  );
  const rows: string[][] = [];
  const report: Record<string, unknown> = { coldCount, warmCount, readSize: READ_SIZE, distinctBlocksBefore: distinct, offsets: offsets.slice(1) };
  const ourFile: Record<string, ReadTimes | undefined> = {};
  for (const file of [
    { name: 'seekxz', label: 'ours', path: ours },
    { name: 'xz -T2', label: 'xz', path: theirs },
  ]) {
    const library = await libraryReads(file.path, offsets, coldCount);
    const clientOffsets = offsets.slice(0, coldCount + 1);
    const nbdkit = nbdClientReads('nbdkit', ['-U', '-', '--filter=xz', '--run', RUN_CLIENT, 'file', `file=${file.path}`, 'xz-max-depth=1'], clientOffsets);
    let serve: ReadTimes | undefined;
    try {
      serve = nbdClientReads(process.execPath, [cli('seekz'), 'serve', file.path, '--readonly', `--cache=${BLOCK_SIZE}`, '--run', RUN_CLIENT], clientOffsets);
    } catch (error) {
      console.log(`  seekz serve failed, so only the library is compared: ${(error as Error).message.split('\n')[0]}`);
    }
    const readers = [
      ['openXz (library, in-process)', library],
      ['seekz serve + libnbd', serve],
      ['nbdkit xz filter + libnbd', nbdkit],
    ] as const;
    for (const [reader, times] of readers) {
      if (!times) continue;
      rows.push([`${reader}, ${file.name}'s file`, ms(median(times.cold)), ms(percentile(times.cold, 0.9)), ms(median(times.warm)), ms(percentile(times.warm, 0.9)), String(times.warm.length)]);
    }
    const same = readers.every(([, times]) => !times || times.sha256 === library.sha256);
    if (!same) process.exitCode = 1;
    console.log(`  ${file.name}'s file: all readers returned the same bytes: ${same ? 'yes' : 'NO'}`);
    report[file.label] = { file: file.path, library, serve, nbdkit, sameBytes: same };
    if (file.label === 'ours') Object.assign(ourFile, { library, serve, nbdkit });
  }
  console.log(`\n${formatTable(['reader', 'cold p50 ms', 'cold p90 ms', 'warm p50 ms', 'warm p90 ms', 'warm reads'], rows)}`);
  const nbdkitCold = median(ourFile.nbdkit!.cold);
  const libraryRatio = median(ourFile.library!.cold) / nbdkitCold;
  const serveRatio = ourFile.serve ? median(ourFile.serve.cold) / nbdkitCold : undefined;
  const libraryWarm = median(ourFile.library!.warm);
  console.log(
    `cold p50 on seekxz's file: openXz / nbdkit ${libraryRatio.toFixed(3)} (in-process against a client)` +
      (serveRatio === undefined ? '' : `; seekz serve / nbdkit ${serveRatio.toFixed(3)} (same client)`),
  );
  const [what, ratio] = serveRatio === undefined ? ['openXz in-process', libraryRatio] : ['seekz serve', serveRatio];
  bench.targets.push(
    { what: `xz random 4 KiB: cold p50 ${what} / nbdkit xz filter`, goal: '≤ 1.00', measured: ratio.toFixed(3), pass: ratio <= 1 },
    { what: 'xz random 4 KiB: warm p50 openXz', goal: '≤ 1 ms', measured: `${ms(libraryWarm)} ms`, pass: libraryWarm <= 0.001 },
  );
  return report;
}

/**
 * COUNT offsets, 4 KiB-aligned and uniform over SIZE, each in another block than the DISTINCT
 * offsets before it, so that an LRU of DISTINCT blocks never holds the block a read needs.
 */
function randomOffsets(seed: number, size: number, count: number, distinct: number): number[] {
  const random = seededRandom(seed);
  const slots = Math.floor(size / READ_SIZE);
  const offsets: number[] = [];
  while (offsets.length < count) {
    const offset = Math.floor(random() * slots) * READ_SIZE;
    const block = Math.floor(offset / BLOCK_SIZE);
    if (offsets.slice(-distinct).every((before) => Math.floor(before / BLOCK_SIZE) !== block)) offsets.push(offset);
  }
  return offsets;
}

/** Cold and warm reads through openXz with a one-block cache; checks that each cold read decodes (unless its block is known zero) and no warm one does. */
async function libraryReads(path: string, offsets: number[], coldCount: number): Promise<ReadTimes> {
  // cacheSize 0 still keeps the newest block (block-cache.ts), as xz-max-depth=1 does.
  const xz = await openXz(await fileSource(path), { cacheSize: 0 });
  const digest = createHash('sha256');
  const cold: number[] = [];
  const warm: number[] = [];
  try {
    await xz.read(offsets[0]!, READ_SIZE); // starts the worker pool
    for (const [index, offset] of offsets.slice(1).entries()) {
      const loads = xz.cache.loads;
      let started = process.hrtime.bigint();
      const data = await xz.read(offset, READ_SIZE);
      const coldTime = Number(process.hrtime.bigint() - started) / 1e9;
      started = process.hrtime.bigint();
      await xz.read(offset, READ_SIZE);
      const warmTime = Number(process.hrtime.bigint() - started) / 1e9;
      // A read in a block known to be all zeros (seekxz's zero-run blocks) decodes nothing, or only
      // the first of its encoding; the warm read never decodes.
      const decoded = xz.cache.loads - loads;
      const zero = (await xz.zeroRanges(offset, READ_SIZE)).some((range) => range.offset <= offset && offset + READ_SIZE <= range.offset + range.length);
      if (zero ? decoded > 1 : decoded !== 1) throw new Error(`bench: read ${index} at ${offset} decoded ${decoded} blocks, expected ${zero ? 'at most 1 (a zero block)' : '1'} cold, 0 warm`);
      warm.push(warmTime);
      if (index < coldCount) {
        cold.push(coldTime);
        digest.update(data);
      }
    }
  } finally {
    await xz.close();
  }
  return { cold, warm, sha256: digest.digest('hex') };
}

/** Runs the libnbd client under a server's --run (nbdkit's or seekz serve's: both set $unixsocket). */
function nbdClientReads(command: string, args: string[], offsets: number[]): ReadTimes {
  const output = execFileSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, SEEKZ_BENCH_NBD_CLIENT: NBD_CLIENT, SEEKZ_BENCH_OFFSETS: JSON.stringify(offsets) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return JSON.parse(output) as ReadTimes;
}
