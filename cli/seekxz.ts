#!/usr/bin/env node
import { createReadStream } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { fail } from '../src/errors.js';
import { writeStdout, type AtomicFile } from '../src/io/atomic-file.js';
import { formatSize, parseSize } from '../src/size.js';
import { defaultThreads, createWorkerPool } from '../src/workers/pool.js';
import { decompressXz, streamDecompressXz } from '../src/xz/decompress.js';
import type { CheckName } from '../src/xz/format.js';
import { DEFAULT_MAX_BLOCK, openXz } from '../src/xz/reader.js';
import { DEFAULT_BLOCK_SIZE, DEFAULT_PRESET, writeXz, xzWriterMemoryBound } from '../src/xz/writer.js';
import { expandLevelFlags, parseInteger, progressLine, runCli, shellManners, storeOptions } from './common.js';
import { fileCodec, openFileWith } from './file-codec.js';
import { listing } from './xz-listing.js';

const program = shellManners(new Command('seekxz'))
  .description(
    'Compress or decompress .xz files like xz, but always as one stream cut into fixed-size blocks ' +
      'with sizes in every block header, so any byte can be read without decompressing the rest ' +
      '(seekz read, nbdkit --filter=xz). Blocks are compressed and decompressed in parallel.',
  )
  .argument('[file...]', "files; none or '-' means stdin to stdout")
  .option('-z, --compress', 'compress (the default)')
  .option('-d, --decompress', 'decompress')
  .option('-t, --test', 'test the integrity of compressed files')
  .option('-l, --list', 'list streams and blocks, like xz --list -v')
  .option('-k, --keep', 'keep (do not delete) input files')
  .option('-c, --stdout', 'write to standard output and keep input files')
  .option('-o, --output <file>', 'write to this file (one input only)')
  .option('-f, --force', 'overwrite existing output files; read or write compressed data on a terminal')
  .addOption(new Option('--block-size <size>', 'uncompressed bytes per block (K/M/G, KiB/MiB/GiB as in xz)').default('16MiB'))
  .addOption(new Option('--level <n>', 'preset 0 to 9; -0 … -9 work too').default(String(DEFAULT_PRESET)))
  .option('-e, --extreme', 'slower, sometimes smaller (xz -e)')
  .addOption(new Option('-C, --check <check>', 'integrity check').choices(['crc32', 'crc64', 'sha256', 'none']).default('crc64'))
  .addOption(new Option('-T, --threads <n>', 'blocks coded at once, one per thread (0 = all cores)').default('0'))
  .option('--max-block <size>', `largest block decoded in one piece (default ${formatSize(DEFAULT_MAX_BLOCK)}); larger ones stream`)
  .option('-q, --quiet', 'no progress line, no warnings')
  .option('-v, --verbose', 'progress and a summary per file')
  .addHelpText(
    'after',
    `
Memory while compressing: about 50 MiB (70 with node-liblzma, SEEKZ_NATIVE=0) + threads × (encoder
+ 3 × block size); the encoder takes 94 MiB at -6 (674 MiB at -9), so
${formatSize(xzWriterMemoryBound(defaultThreads(), DEFAULT_BLOCK_SIZE, DEFAULT_PRESET))} at the defaults (${defaultThreads()} threads, -6, 16 MiB blocks).
While decompressing into a regular file (-o, or stdout redirected to one) with the native engine,
the decoding threads write the blocks themselves: about 100 MiB + (threads + 2) × 2 × compressed
block size (measured 95 MiB at 2 threads and 16 MiB blocks, 256 MiB image); through a pipe, about
100 MiB + (threads + 2) × 2 × block size (measured 227 MiB).

Examples:
  seekxz --block-size=16M disk.img        # disk.img -> disk.img.xz
  seekxz -dk disk.img.xz                   # keep the .xz
  seekxz -l disk.img.xz
  seekxz --store-partition 1 disk.img     # /boot stays editable: seekz patch disk.img.xz …
  seekz read disk.img.xz --offset 1G --length 4096`,
  );

/** Options whose next argument is their value, so `-T -1` is not read as level 1. */
storeOptions(program, 'stored blocks (LZMA2 uncompressed chunks)');

const TAKES_VALUE = ['-o', '--output', '--block-size', '--level', '-C', '--check', '-T', '--threads', '--max-block'];

runCli('seekxz', async () => {
  program.parse(expandLevelFlags(process.argv, TAKES_VALUE));
  const options = program.opts();
  const { mode, outputName, openOutput, decompressStdin, forEachFile, compressFile: compressWith } = fileCodec(options, program.args, { ext: '.xz', tar: '.txz' });
  const threadsOption = parseInteger(options.threads, '-T/--threads', 0, 256);
  const threads = threadsOption === 0 ? defaultThreads() : threadsOption;
  const blockSize = parseSize(options.blockSize);
  const preset = parseInteger(options.level, 'level', 0, 9);
  const maxBlock = options.maxBlock ? parseSize(options.maxBlock) : DEFAULT_MAX_BLOCK;

  await forEachFile(async (file) => {
    if (mode === 'list') await listFile(file);
    else if (mode === 'test') await decompressFile(file, undefined);
    else if (mode === 'decompress') await decompressFile(file, outputName(file, 'decompress'));
    else await compressFile(file, outputName(file, 'compress'));
  });

  async function finish(input: string, output: AtomicFile | undefined) {
    await output?.commit();
    // Like xz: a successful compression or decompression into a file removes the input, and only
    // once the output is complete, synced and renamed into place (commit).
    if (output && input !== '-' && !options.keep && !options.stdout) await unlink(input);
  }

  function compressFile(file: string, outPath: string | undefined) {
    return compressWith(file, outPath, {
      ...options,
      store: options as { store: string[]; storePartition: string[] },
      finish,
      write: async (input, sink, stored, onProgress) => {
        const result = await writeXz(input, sink, { stored, blockSize, preset, extreme: options.extreme, check: options.check as CheckName, threads, onProgress });
        return { ...result, units: `${result.records.length} blocks (${result.zeroBlocks} all zero)` };
      },
    });
  }

  async function decompressFile(file: string, outPath: string | undefined) {
    if (file === '-') return decompressStdin(outPath, streamDecompressXz); // streamed through liblzma
    const like = await stat(file); // before the first read moves its atime
    const pool = createWorkerPool(threads);
    const xz = await openFileWith(file, (source) => openXz(source, { pool, maxBlock }), () => pool.close());
    const progress = progressLine(xz.size, !options.quiet);
    let output: Awaited<ReturnType<typeof openOutput>> | undefined;
    try {
      if (mode !== 'test') output = await openOutput(outPath, like);
      await decompressXz(xz, output?.sink, {
        threads,
        maxBlock,
        streamFile: () => createReadStream(file),
        onProgress: progress.update,
      });
      progress.finish();
      if (output) await finish(file, output.file);
      if (options.verbose && !options.quiet) process.stderr.write(`${file}: ${mode === 'test' ? 'ok' : formatSize(xz.size)}\n`);
    } catch (error) {
      progress.finish();
      await output?.file?.abort();
      throw error;
    } finally {
      await xz.close();
      await pool.close();
    }
  }

  async function listFile(file: string) {
    const xz = await openFileWith(file, (source) => openXz(source));
    try {
      await writeStdout(listing(file, xz));
    } finally {
      await xz.close();
    }
  }
});
