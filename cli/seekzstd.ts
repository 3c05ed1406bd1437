#!/usr/bin/env node
import { stat, unlink } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { fail } from '../src/errors.js';
import type { Sink } from '../src/io/sink.js';
import { writeStdout, type AtomicFile } from '../src/io/atomic-file.js';
import { fileSource } from '../src/source/file.js';
import { formatSize, parseSize } from '../src/size.js';
import { defaultThreads } from '../src/workers/pool.js';
import { zstdCodecName } from '../src/zstd/codec.js';
import { decodePoolThreads, decompressZstd, streamDecompressZstd } from '../src/zstd/decompress.js';
import { DEFAULT_MAX_FRAME, openZstd } from '../src/zstd/reader.js';
import { DEFAULT_FRAME_SIZE, DEFAULT_LEVEL, writeZstd, zstdWriterMemoryBound } from '../src/zstd/writer.js';
import { parseInteger, progressLine, runCli, shellManners, storeOptions } from './common.js';
import { fileCodec, openFileWith } from './file-codec.js';

const program = shellManners(new Command('seekzstd'))
  .description(
    'Compress or decompress .zst files like zstd, but always in the zstd seekable format: independent\n' +
      'frames of --frame-size bytes, each with its checksum, and a seek table at the end, so any byte\n' +
      'can be read without decompressing the rest (seekz read, seekz serve). zstd -d reads the files\n' +
      'as they are. Frames are compressed and decompressed in parallel; the output is the same for any -T.',
  )
  .argument('[file...]', "files; none or '-' means stdin to stdout")
  .option('-z, --compress', 'compress (the default)')
  .option('-d, --decompress', 'decompress')
  .option('-t, --test', 'test the integrity of compressed files')
  .option('-l, --list', 'list frames, like zstd -lv, one line per frame')
  .option('-k, --keep', 'keep input files (the default, as in zstd)')
  .option('--rm', 'remove input files after a successful (de)compression')
  .option('-c, --stdout', 'write to standard output')
  .option('-o, --output <file>', 'write to this file (one input only)')
  .option('-f, --force', 'overwrite existing output files; write compressed data to a terminal')
  .addOption(new Option('--frame-size <size>', 'uncompressed bytes per frame (K/M/G, KiB/MiB/GiB)').default(`${DEFAULT_FRAME_SIZE / 2 ** 20}MiB`))
  .addOption(new Option('--level <n>', 'level 1 to 19 (20 to 22 with --ultra); -1 … -19 work too').default(String(DEFAULT_LEVEL)))
  .option('--ultra', 'allow levels 20 to 22 (much more memory)')
  .addOption(new Option('-T, --threads <n>', 'frames coded at once (0 = all cores; zstd defaults to 1, seekz to all)').default('0'))
  .option('--max-frame <size>', `largest frame decoded in one piece (default ${formatSize(DEFAULT_MAX_FRAME)}); larger ones stream`)
  .option('-q, --quiet', 'no progress line, no summary')
  .option('-v, --verbose', 'a summary per file')
  .addHelpText(
    'after',
    `
Memory while compressing: about 100 MiB + threads × encoder + (threads + 3) × 2 × run, a run being
the frames that fit in 4 MiB (at least one); the encoder takes ~8 MiB at -3, ~200 MiB at -19 and
~700 MiB at -22 (less when frames are smaller than its window): ${formatSize(zstdWriterMemoryBound(2, DEFAULT_FRAME_SIZE, DEFAULT_LEVEL))} at -T2 with the defaults (-${DEFAULT_LEVEL}, ${formatSize(DEFAULT_FRAME_SIZE)} frames).
While decompressing: about 100 MiB + 1.5 × (threads + 3) × the larger of frame size and 4 MiB (frames
above --max-frame stream).
Codec: ${zstdCodecName()}${zstdCodecName() === 'fzstd' ? ' (the seekz_zstd addon is not built: decoding only)' : ''}.

Examples:
  seekzstd -T0 disk.img                    # disk.img -> disk.img.zst, frames of ${formatSize(DEFAULT_FRAME_SIZE)}
  seekzstd -d disk.img.zst -o copy.img
  seekzstd -l disk.img.zst
  seekzstd --store-partition 1 disk.img    # /boot stays editable: seekz patch disk.img.zst …
  seekz read disk.img.zst --offset 1G --length 4096
  seekz serve disk.img.zst                 # NBD, zero frames reported as holes`,
  );

storeOptions(program, 'stored frames (raw blocks)');

/** zstd-style flags: `-19`, `-3v` become `--level N` plus the rest; `-T2` is commander's own. */
function expandZstdFlags(argv: string[]): string[] {
  return argv.flatMap((arg) => {
    const match = /^-(\d{1,2})([a-zA-Z]*)$/.exec(arg);
    if (!match) return [arg];
    return ['--level', match[1]!, ...(match[2] ? [`-${match[2]}`] : [])];
  });
}

runCli('seekzstd', async () => {
  program.parse(expandZstdFlags(process.argv));
  const options = program.opts();
  const { mode, outputName, openOutput, decompressStdin, forEachFile, compressFile: compressWith } = fileCodec(options, program.args, { ext: '.zst', tar: '.tzst' });
  const threadsOption = parseInteger(options.threads, 'threads', 0, 256);
  const threads = threadsOption === 0 ? defaultThreads() : threadsOption;
  const frameSize = parseSize(options.frameSize);
  const level = parseInteger(options.level, 'level', 1, 22);
  if (level > 19 && !options.ultra) throw fail('BAD_ARGUMENT', `level ${level} needs --ultra (levels above 19 take much more memory)`);
  const maxFrame = options.maxFrame ? parseSize(options.maxFrame) : DEFAULT_MAX_FRAME;

  await forEachFile(async (file) => {
    if (mode === 'list') await listFile(file);
    else if (mode === 'test') await decompressFile(file, undefined);
    else if (mode === 'decompress') await decompressFile(file, outputName(file, 'decompress'));
    else await compressFile(file, outputName(file, 'compress'));
  });

  async function finish(input: string, output: AtomicFile | undefined) {
    await output?.commit();
    // Like zstd: the input stays unless --rm asks otherwise.
    if (output && input !== '-' && options.rm && !options.stdout) await unlink(input);
  }

  function compressFile(file: string, outPath: string | undefined) {
    return compressWith(file, outPath, {
      ...options,
      store: options as { store: string[]; storePartition: string[] },
      finish,
      write: async (input, sink, stored, onProgress) => {
        const result = await writeZstd(input, sink, { frameSize, level, threads, stored, onProgress });
        return { ...result, units: `${result.entries.length} frames (${result.zeroFrames} all zero)` };
      },
    });
  }

  async function decompressFile(file: string, outPath: string | undefined) {
    if (file === '-') return decompressStdin(outPath, streamDecompressZstd); // streamed through libzstd
    const like = await stat(file); // before the first read moves its atime
    const poolThreads = await decodePoolThreads(threads);
    const zstd = await openFileWith(file, (source) => openZstd(source, { threads: poolThreads, maxFrame }));
    const progress = progressLine(zstd.size, !options.quiet);
    let output: { sink: Sink; file?: AtomicFile } | undefined;
    try {
      output = mode === 'test' ? undefined : await openOutput(outPath, like);
      await decompressZstd(zstd, output?.sink, { threads, onProgress: progress.update });
      progress.finish();
      if (output) await finish(file, output.file);
      if (options.verbose && !options.quiet) process.stderr.write(`${file}: ${mode === 'test' ? 'OK' : formatSize(zstd.size)}\n`);
    } catch (error) {
      progress.finish();
      await output?.file?.abort();
      throw error;
    } finally {
      await zstd.close();
    }
  }

  async function listFile(file: string) {
    // Loaded here: info.js brings gzip's and xz's modules, start-up time that -d and -z never need.
    const [{ describe }, { zstdListing }] = await Promise.all([import('../src/info.js'), import('./zstd-listing.js')]);
    const source = await fileSource(file);
    const zstd = Object.assign(await openZstd(source).catch(async (error: unknown) => {
      await source.close();
      throw error;
    }), { format: 'zstd' as const });
    try {
      const info = await describe(zstd, source, { members: [] });
      if (info.format === 'zstd') await writeStdout(zstdListing(file, info));
    } finally {
      await zstd.close();
    }
  }
});
