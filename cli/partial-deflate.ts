#!/usr/bin/env node
import { stat } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { defaultThreads } from '../src/workers/pool.js';
import { findPartition } from '../src/disk/partitions.js';
import { fail } from '../src/errors.js';
import { DEFAULT_CHUNK_SIZE, DEFAULT_LEVEL, partialDeflate, writerMemoryBound } from '../src/gzip/partial-deflate.js';
import { createAtomicFile, streamSink, type AtomicFile } from '../src/io/atomic-file.js';
import { fileSource } from '../src/source/file.js';
import { sequentialFromSource, sequentialFromStream, type SequentialInput } from '../src/source/sequential.js';
import type { Source } from '../src/source/source.js';
import { formatSize, parseRange, parseSize } from '../src/size.js';
import { expandLevelFlags, parseInteger, progressLine, refuseTerminalOutput, runCli, shellManners, workingOn } from './common.js';

const program = shellManners(new Command('partial-deflate'))
  .description(
    'Compress IN to a gzip file in which [START, END) and every --store range are deflate stored blocks, ' +
      'so `seekz patch` can change those bytes in place later. Everything else is compressed in parallel. ' +
      'The output is one standard gzip member: gzip, zcat, pigz and Python read it.',
  )
  .argument('<in>', "input file ('-' for stdin)")
  .argument('<out>', "output .gz ('-' for stdout; a pipe gets no seekz map)")
  .argument('[start]', 'first byte of the range to store (K/M/G, KiB/MiB/GiB, 0x…)')
  .argument('[end]', 'end of the stored range, exclusive')
  .addOption(new Option('-l, --level <n>', 'compression level 1 (fast) to 9 (best); -1 … -9 work too').default(String(DEFAULT_LEVEL)))
  .option('--store <start:end>', 'also store this range (repeatable)', (value: string, all: string[]) => [...all, value], [] as string[])
  .option('--store-partition <n>', "store partition N of the input's MBR or GPT (repeatable)", (value: string, all: string[]) => [...all, value], [] as string[])
  .addOption(new Option('-T, --threads <n>', 'chunks deflated at once (0 = all cores)').default(String(defaultThreads())))
  .addOption(new Option('--chunk-size <size>', 'uncompressed bytes per independent chunk (a checkpoint each)').default('1MiB'))
  .option('-f, --force', 'overwrite OUT if it exists; write to a terminal')
  .option('-q, --quiet', 'no progress line, no summary')
  .option('-v, --verbose', 'print a summary: sizes, ratio, stored ranges, checkpoints')
  .addHelpText(
    'after',
    `
Memory: at most about 100 MiB + threads × 8 MiB + (4 × threads + 4) × chunk size;
${formatSize(writerMemoryBound(defaultThreads(), DEFAULT_CHUNK_SIZE))} at the defaults (${defaultThreads()} threads, ${formatSize(DEFAULT_CHUNK_SIZE)} chunks), whatever the input size.

Examples:
  partial-deflate disk.img disk.img.gz 1MiB 513MiB
  partial-deflate --store-partition 1 -9 disk.img disk.img.gz
  seekz patch disk.img.gz --from boot.img --at 1MiB`,
  );

/** Options whose next argument is their value, so `-T -1` is not read as level 1. */
const TAKES_VALUE = ['-l', '--level', '--store', '--store-partition', '-T', '--threads', '--chunk-size'];

runCli('partial-deflate', async () => {
  program.parse(expandLevelFlags(process.argv, TAKES_VALUE));
  const options = program.opts();
  const [inPath, outPath, startText, endText] = program.args as [string, string, string?, string?];
  if ((startText === undefined) !== (endText === undefined)) throw fail('BAD_ARGUMENT', 'give both START and END, or neither');
  const level = parseInteger(options.level, 'level', 1, 9);
  const threadsOption = parseInteger(options.threads, '-T/--threads', 0, 256);
  const threads = threadsOption === 0 ? defaultThreads() : threadsOption; // 0: all cores, as seekxz -T0 and xz -T0
  const chunkSize = parseSize(options.chunkSize);

  const stored = [...(options.store as string[]).map(parseRange)];
  if (startText !== undefined) stored.unshift(parseRange(`${startText}:${endText}`));
  if (outPath === '-') refuseTerminalOutput(options.force);

  workingOn(inPath);
  const like = inPath === '-' ? undefined : await stat(inPath); // before the first read moves its atime
  let source: Source | undefined;
  let input: SequentialInput;
  if (inPath === '-') {
    if ((options.storePartition as string[]).length > 0) throw fail('BAD_ARGUMENT', '--store-partition needs a file input, not stdin');
    input = sequentialFromStream(process.stdin);
  } else {
    source = await fileSource(inPath);
    input = sequentialFromSource(source);
    for (const text of options.storePartition as string[]) {
      const partition = await findPartition(source, parseInteger(text, 'partition number', 1, 65536));
      stored.push({ start: partition.start, end: partition.start + partition.size });
    }
  }

  let output: AtomicFile | undefined;
  const started = Date.now();
  const progress = progressLine(input.size, !options.quiet);
  try {
    output = outPath === '-' ? undefined : await createAtomicFile(outPath, { force: options.force, like });
    const result = await partialDeflate(input, output ? output.sink : streamSink(process.stdout), {
      level,
      threads,
      chunkSize,
      stored,
      onProgress: progress.update,
    });
    progress.finish();
    await output?.commit();
    if (options.verbose && !options.quiet) {
      const seconds = (Date.now() - started) / 1000;
      const storedRegions = result.map?.regions.filter((region) => region.kind === 'stored') ?? [];
      process.stderr.write(
        `${inPath}: ${formatSize(result.totalLength)} -> ${formatSize(result.compressedLength)} ` +
          `(${((100 * result.compressedLength) / Math.max(1, result.totalLength)).toFixed(2)}%) in ${seconds.toFixed(2)} s, ` +
          `${formatSize(result.totalLength / Math.max(seconds, 1e-3))}/s\n` +
          `  stored (editable): ${storedRegions.map((region) => `[${region.start}, ${region.start + region.length})`).join(' ') || 'none'}\n` +
          `  checkpoints: ${result.map ? result.map.segments.length : 'none (output is a pipe)'}, all-zero chunks: ${result.zeroChunks}\n`,
      );
    }
  } catch (error) {
    progress.finish();
    await output?.abort();
    throw error;
  } finally {
    await source?.close?.();
  }
});
