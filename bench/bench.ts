/**
 * `npm run bench`: measures seekz against the tools people use today, on one generated disk image,
 * in one run, so that the ratios compare like with like. Absolute times depend on the machine; the
 * ratios are the result. Each section prints its part and adds to the targets and the JSON report.
 * Usage: npm run bench -- [--size 2G] [--dir DIR] [--quick] [--repeat N] [--seed N] [--data-fraction F] [--only xz]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { defaultThreads } from '../src/workers/pool.js';
import { patchFile } from '../src/edit/patch.js';
import { DEFAULT_CHUNK_SIZE, writerMemoryBound } from '../src/gzip/partial-deflate.js';
import { openGzip } from '../src/gzip/reader.js';
import { fileSource } from '../src/source/file.js';
import { formatSize, parseSize } from '../src/size.js';
import {
  MIB,
  cli,
  compareTools,
  describeImage,
  diskImage,
  helpParagraph,
  mib,
  ms,
  percent,
  succeeds,
  type Bench,
  type Target,
  type Tool,
  type ToolResult,
} from './bench-common.js';
import { formatTable, measure, median, rssMethod } from './bench-measure.js';
import { xzSection } from './bench-xz.js';
import { indexSection } from './bench-index.js';
import { serveSection } from './bench-serve.js';
import { librarySection } from './bench-library.js';
import { zstdSection } from './bench-zstd.js';
import { editSection } from './bench-edit.js';
import { startupSection } from './bench-startup.js';
import { holdFreedMemory } from './page-reporting.js';

const PATCH_SIZE = 4096;
const PATCH_RUNS = 5;

const PARTIAL_DEFLATE_STORED: Tool = {
  name: 'partial-deflate -6 --store-partition 1',
  command: process.execPath,
  args: (input, output) => [cli('partial-deflate'), '-6', '-q', '--store-partition', '1', input, output],
  toStdout: false,
};
const PARTIAL_DEFLATE_WHOLE: Tool = {
  name: 'partial-deflate -6 (nothing stored)',
  command: process.execPath,
  args: (input, output) => [cli('partial-deflate'), '-6', '-q', input, output],
  toStdout: false,
};
const GZIP: Tool = { name: 'gzip -6', command: 'gzip', args: (input) => ['-6', '-c', input], toStdout: true };
const PIGZ: Tool = { name: 'pigz -6 -p2', command: 'pigz', args: (input) => ['-6', '-p2', '-c', input], toStdout: true };
const GZIP_OUTPUT = { suffix: 'gz', verify: { name: 'gzip -t', check: (path: string) => succeeds('gzip', ['-t', path]) } };

/** Sections run in this order; `needs` names the sections whose results they reuse. */
const sections: { name: string; needs: string[]; run: (bench: Bench) => Promise<void> }[] = [
  { name: 'image', needs: [], run: imageSection },
  { name: 'gzip', needs: ['image'], run: gzipSection },
  { name: 'zeros', needs: ['gzip'], run: zerosSection },
  { name: 'patch', needs: ['gzip'], run: patchSection },
  { name: 'startup', needs: ['gzip'], run: startupSection },
  { name: 'xz', needs: ['image'], run: xzSection },
  { name: 'index', needs: ['image'], run: indexSection },
  { name: 'serve', needs: ['image'], run: serveSection },
  { name: 'library', needs: ['image'], run: librarySection },
  { name: 'zstd', needs: ['image'], run: zstdSection },
  { name: 'edit', needs: ['image'], run: editSection },
];

async function main(): Promise<void> {
  const { bench, only } = parseOptions();
  const chosen = chooseSections(only);
  mkdirSync(bench.dir, { recursive: true });
  console.log(
    `seekz bench: ${cpus().length} CPUs (${availableParallelism()} available), Node ${process.version}, ` +
      `work dir ${bench.dir}, repeat ${bench.repeat} (median wall, highest RSS), RSS from ${rssMethod}`,
  );
  bench.report = { date: new Date().toISOString(), node: process.version, cpus: cpus().length, rssMethod, repeat: bench.repeat, sections: chosen.map((section) => section.name) };
  noteExtraCaCerts(bench);
  // What the run writes: the images, their compressed copies and the outputs of the timed runs.
  const release = holdFreedMemory(bench, 3 * bench.size + 2 * 1024 ** 3);
  try {
    for (const section of chosen) {
      console.log(`\n== ${section.name}`);
      await section.run(bench);
    }
  } finally {
    for (const path of bench.scratch) rmSync(path, { force: true });
    release();
  }
  printTargets(bench.targets);
  // A partial run does not overwrite the last full report.
  const reportPath = join(bench.dir, only ? `bench-results-${only.join('-')}.json` : 'bench-results.json');
  writeFileSync(reportPath, `${JSON.stringify({ ...bench.report, targets: bench.targets }, null, 2)}\n`);
  console.log(`\nresults: ${reportPath}`);
}

/**
 * Node parses NODE_EXTRA_CA_CERTS at every start, before any of our code runs. Some machines set it
 * (this sandbox: the whole system bundle), and then every seekz row pays for it and the C peers do
 * not. The bench keeps the environment it was given; this says what that costs.
 */
function noteExtraCaCerts(bench: Bench): void {
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (!extra) return;
  const start = (env: NodeJS.ProcessEnv) => {
    const walls: number[] = [];
    for (let round = 0; round < 9; round++) {
      const began = performance.now();
      execFileSync(process.execPath, ['-e', ''], { env });
      walls.push(performance.now() - began);
    }
    return walls.sort((a, b) => a - b)[4]!;
  };
  const without = { ...process.env };
  delete without.NODE_EXTRA_CA_CERTS;
  const [withIt, withoutIt] = [start(process.env), start(without)];
  console.log(
    `NODE_EXTRA_CA_CERTS=${extra} is set: node -e '' takes ${withIt.toFixed(1)} ms with it, ${withoutIt.toFixed(1)} ms without ` +
      `(medians of 9). Every seekz command below pays the difference at start; the peers in C do not.`,
  );
  bench.report.extraCaCerts = { path: extra, nodeStartMs: withIt, nodeStartWithoutMs: withoutIt };
}

/** The sections named by --only, plus the ones they need, in run order. */
function chooseSections(only: string[] | undefined): typeof sections {
  if (!only) return sections;
  const wanted = new Set<string>();
  const add = (name: string) => {
    const section = sections.find((candidate) => candidate.name === name);
    if (!section) throw new Error(`bench: --only: no section '${name}'; there are ${sections.map((candidate) => candidate.name).join(', ')}`);
    wanted.add(name);
    section.needs.forEach(add);
  };
  only.forEach(add);
  return sections.filter((section) => wanted.has(section.name));
}

function parseOptions(): { bench: Bench; only?: string[] } {
  const { values } = parseArgs({
    options: {
      size: { type: 'string' },
      dir: { type: 'string', default: join(tmpdir(), 'seekz-bench') },
      quick: { type: 'boolean', default: false },
      repeat: { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      'data-fraction': { type: 'string', default: '0.35' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(
      'usage: npm run bench -- [--size SIZE] [--dir DIR] [--quick] [--repeat N] [--seed N] [--data-fraction F] [--only NAMES]\n' +
        '  --size           image size (default 2GiB; --quick: 256MiB); K/M/G are binary\n' +
        '  --dir            work dir; images are kept there and reused (default $TMPDIR/seekz-bench)\n' +
        '  --repeat         runs per tool; the report takes the median wall time\n' +
        '  --data-fraction  share of the root partition that holds data (default 0.35)\n' +
        `  --only           comma-separated sections (${sections.map((section) => section.name).join(', ')}) and those they need;\n` +
        '                   the report goes to bench-results-NAMES.json',
    );
    process.exit(0);
  }
  const repeat = Number(values.repeat);
  const seed = Number(values.seed);
  const dataFraction = Number(values['data-fraction']);
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`bench: --repeat must be a whole number ≥ 1, got '${values.repeat}'`);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`bench: --seed must be a whole number ≥ 0, got '${values.seed}'`);
  if (!(dataFraction > 0 && dataFraction <= 1)) throw new Error(`bench: --data-fraction must be in (0, 1], got '${values['data-fraction']}'`);
  const size = values.size !== undefined ? parseSize(values.size) : values.quick ? 256 * MIB : 2 * 1024 * MIB;
  const only = values.only?.split(',').map((name) => name.trim()).filter((name) => name !== '');
  return { bench: { dir: values.dir, size, seed, dataFraction, repeat, quick: values.quick, targets: [], report: {}, scratch: [] }, only };
}

// ---- image

async function imageSection(bench: Bench): Promise<void> {
  bench.image = await diskImage(bench, bench.dataFraction);
  bench.report.image = describeImage(bench.image);
}

// ---- gzip: partial-deflate against gzip and pigz

async function gzipSection(bench: Bench): Promise<void> {
  const image = bench.image!;
  const results = await compareTools(bench, image, [PARTIAL_DEFLATE_STORED, PARTIAL_DEFLATE_WHOLE, GZIP, PIGZ], {
    ...GZIP_OUTPUT,
    label: 'gzip',
    keep: [PARTIAL_DEFLATE_STORED],
  });
  bench.compression = results;
  const [stored, whole, gzip, pigz] = results as [ToolResult, ToolResult, ToolResult, ToolResult];
  const ourRss = Math.max(stored.rss, whole.rss);
  const helpMemory = helpParagraph('partial-deflate', 'Memory:');
  const formulaBytes = writerMemoryBound(defaultThreads(), DEFAULT_CHUNK_SIZE);

  const timeVsPigz = stored.wall / pigz.wall;
  const timeVsGzip = stored.wall / gzip.wall;
  const sizeVsPigz = whole.bytes / pigz.bytes;
  console.log(
    `\npartial-deflate threads: ${defaultThreads()} (default)\n` +
      `time  partial-deflate (stored run) / pigz -p2: ${timeVsPigz.toFixed(3)}\n` +
      `time  partial-deflate (stored run) / gzip -6:  ${timeVsGzip.toFixed(3)}\n` +
      `size  partial-deflate / pigz -p2: ${sizeVsPigz.toFixed(4)}. Method: the same image compressed with nothing stored, so the\n` +
      `      stored range is left out by not having one; the stored run is ${stored.bytes} bytes ` +
      `(+${stored.bytes - whole.bytes} bytes for a ${formatSize(image.plan.boot.size)} editable partition)\n` +
      `peak RSS partial-deflate: ${mib(ourRss)} MiB; --help says: ${helpMemory} (= ${mib(formulaBytes)} MiB by writerMemoryBound)`,
  );
  bench.targets.push(
    { what: 'gzip: time partial-deflate / pigz -p2', goal: '≤ 1.00', measured: timeVsPigz.toFixed(3), pass: timeVsPigz <= 1 },
    { what: 'gzip: time partial-deflate / gzip -6', goal: '≤ 0.50', measured: timeVsGzip.toFixed(3), pass: timeVsGzip <= 0.5 },
    { what: 'gzip: size partial-deflate / pigz -p2 (nothing stored)', goal: '≤ 1.01', measured: sizeVsPigz.toFixed(4), pass: sizeVsPigz <= 1.01 },
    { what: 'gzip: peak RSS of partial-deflate', goal: '≤ 300 MiB', measured: `${mib(ourRss)} MiB`, pass: ourRss <= 300 * MIB },
  );
  bench.report.gzip = {
    image: image.path,
    tools: results.map(({ kept, ...result }) => result),
    ratios: { timeVsPigz, timeVsGzip, sizeVsPigz },
    sizeMethod: 'partial-deflate with nothing stored vs pigz -6 -p2 on the same image',
    storedRunBytes: stored.bytes,
    threads: defaultThreads(),
    memory: { peakRss: ourRss, help: helpMemory, formulaBytes },
  };
}

// ---- zeros: the speed-up on images that are mostly sparse

async function zerosSection(bench: Bench): Promise<void> {
  let image = bench.image!;
  let stored: ToolResult;
  let pigz: ToolResult;
  if (image.zeroShare >= 0.5) {
    console.log(`the image above is ${percent(image.zeroShare)} zeros (≥ 50 %): reusing its partial-deflate and pigz -p2 runs`);
    [stored, pigz] = [bench.compression![0]!, bench.compression![3]!];
  } else {
    console.log(`the image above is only ${percent(image.zeroShare)} zeros: making a second one with data fraction 0.2`);
    image = await diskImage(bench, 0.2);
    [stored, pigz] = (await compareTools(bench, image, [PARTIAL_DEFLATE_STORED, PIGZ], { ...GZIP_OUTPUT, label: 'zeros' })) as [ToolResult, ToolResult];
  }
  const speedup = pigz.wall / stored.wall;
  console.log(`partial-deflate is ${speedup.toFixed(2)}× as fast as pigz -p2 on an image with ${percent(image.zeroShare)} zeros`);
  bench.targets.push({
    what: `zeros: speed-up vs pigz -p2 (${percent(image.zeroShare)} zeros)`,
    goal: '≥ 2.00×',
    measured: `${speedup.toFixed(2)}×`,
    pass: speedup >= 2,
  });
  bench.report.zeros = { reusedGzipSection: image === bench.image, image: describeImage(image), partialDeflateWall: stored.wall, pigzWall: pigz.wall, speedup };
}

// ---- patch: a 4 KiB edit inside the stored boot partition

async function patchSection(bench: Bench): Promise<void> {
  const image = bench.image!;
  const file = bench.compression![0]!.kept!;
  const { boot, bootEntryOffset: offset } = image.plan;
  if (offset + PATCH_SIZE > boot.start + boot.size) throw new Error('bench: the boot partition is too small for the patch');
  const dataPath = join(bench.dir, 'patch.bin');
  bench.scratch.push(dataPath);
  console.log(`patching ${PATCH_SIZE} bytes at offset ${offset} (inside /boot) of ${file} (${formatSize(statSync(file).size)}), ${PATCH_RUNS} times each way`);

  // Node's own start-up is part of every CLI run: measure it, so the CLI number can be read.
  const nodeStart = median(await repeatRuns(() => measure(process.execPath, ['-e', '']).then((run) => run.wall)));
  let lastLine = '';
  const cliWall = median(
    await repeatRuns(async () => {
      writeFileSync(dataPath, randomBytes(PATCH_SIZE));
      const run = await measure(process.execPath, [cli('seekz'), 'patch', file, '--offset', String(offset), '--data', dataPath, '-v']);
      lastLine = run.stderr.trim();
      return run.wall;
    }),
  );
  let bytesRead = 0;
  let lastData = new Uint8Array();
  const libraryWall = median(
    await repeatRuns(async () => {
      lastData = randomBytes(PATCH_SIZE);
      const started = process.hrtime.bigint();
      const result = await patchFile(file, [{ offset, data: lastData }]);
      const wall = Number(process.hrtime.bigint() - started) / 1e9;
      if (result.bytesWritten !== PATCH_SIZE) throw new Error(`bench: patchFile wrote ${result.bytesWritten} bytes, expected ${PATCH_SIZE}`);
      bytesRead = Math.max(bytesRead, result.bytesRead);
      return wall;
    }),
  );
  const gzipOk = GZIP_OUTPUT.verify.check(file);
  const readBackOk = await readsBack(file, offset, lastData);
  console.log(
    `CLI says: ${lastLine}\n` +
      `seekz patch CLI: ${ms(cliWall)} ms wall (median of ${PATCH_RUNS}; node -e '' alone: ${ms(nodeStart)} ms)\n` +
      `patchFile in-process: ${ms(libraryWall)} ms (median of ${PATCH_RUNS}), read ${bytesRead} bytes of the file\n` +
      `after ${2 * PATCH_RUNS} patches: gzip -t ${gzipOk ? 'ok' : 'FAILED'}, patched bytes read back ${readBackOk ? 'ok' : 'FAILED'}`,
  );
  if (!gzipOk || !readBackOk) process.exitCode = 1;
  const note = `${formatSize(image.plan.size)} image; goal is for 6 GiB`;
  bench.targets.push(
    { what: `patch 4 KiB: seekz CLI wall (${note})`, goal: '≤ 50 ms', measured: `${ms(cliWall)} ms`, pass: cliWall <= 0.05 },
    { what: `patch 4 KiB: patchFile in-process (${note})`, goal: '≤ 50 ms', measured: `${ms(libraryWall)} ms`, pass: libraryWall <= 0.05 },
    { what: 'patch 4 KiB: bytes of the file read', goal: '≤ 1 MiB', measured: `${bytesRead} bytes`, pass: bytesRead <= MIB },
    { what: 'patch: gzip -t and read-back after patches', goal: 'ok', measured: gzipOk && readBackOk ? 'ok' : 'FAILED', pass: gzipOk && readBackOk },
  );
  bench.report.patch = { file, offset, size: PATCH_SIZE, runs: PATCH_RUNS, cliWall, nodeStart, libraryWall, bytesRead, gzipOk, readBackOk, cliLine: lastLine };
}

async function repeatRuns(run: () => Promise<number>): Promise<number[]> {
  const walls: number[] = [];
  for (let index = 0; index < PATCH_RUNS; index++) walls.push(await run());
  return walls;
}

async function readsBack(file: string, offset: number, expected: Uint8Array): Promise<boolean> {
  const source = await fileSource(file);
  try {
    const actual = await (await openGzip(source)).read(offset, expected.length);
    return Buffer.from(actual).equals(expected);
  } finally {
    await source.close();
  }
}

// ---- shared

function printTargets(targets: Target[]): void {
  console.log(
    `\n== targets\n${formatTable(
      ['target', 'goal', 'measured', ''],
      targets.map((target) => [target.what, target.goal, target.measured, target.pass ? 'PASS' : 'MISS']),
    )}`,
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
