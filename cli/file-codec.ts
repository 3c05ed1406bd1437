import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { fail } from '../src/errors.js';
import type { Sink } from '../src/io/sink.js';
import { createAtomicFile, sparseStdout, streamSink, type AtomicFile } from '../src/io/atomic-file.js';
import { fileSource } from '../src/source/file.js';
import { sequentialFromSource, sequentialFromStream, type SequentialInput } from '../src/source/sequential.js';
import type { Source } from '../src/source/source.js';
import { formatSize } from '../src/size.js';
import { progressLine, refuseTerminalOutput, reportAndContinue, storedRangesOf, workingOn } from './common.js';

/** What a writer tells of one compressed file, for -v; `units` reads like "12 blocks (3 all zero)". */
export interface CompressSummary {
  uncompressedSize: number;
  compressedSize: number;
  storedBytes: number;
  units: string;
}

/** How seekxz or seekzstd compresses one file: its writer, and its rule for the input once done. */
export interface CompressWith {
  quiet?: boolean;
  verbose?: boolean;
  store: { store: string[]; storePartition: string[] };
  /** Commits the output, then removes the input if the tool's rule says so. */
  finish(input: string, output: AtomicFile | undefined): Promise<void>;
  write(input: SequentialInput, sink: Sink, stored: { start: number; end: number }[], onProgress: (done: number) => void): Promise<CompressSummary>;
}

/** The flags that xz and zstd share and that decide what happens to each file. */
export interface FileCodecFlags {
  list?: boolean;
  test?: boolean;
  decompress?: boolean;
  stdout?: boolean;
  output?: string;
  force?: boolean;
}

export type FileCodecMode = 'list' | 'test' | 'decompress' | 'compress';

/**
 * What seekxz and seekzstd share: xz's and zstd's rules for files. The mode the flags ask for;
 * where each file's output goes (FILE.ext, the suffix taken off, `-c`, `-o`, stdin to stdout);
 * no compressed data to a terminal, nor read from one, unless `-f`; the output file takes the
 * input's owner, mode and times and gets holes when decompressed; and with several files, one
 * that fails is reported and the rest go on (exit 1 at the end).
 */
export function fileCodec(flags: FileCodecFlags, args: string[], suffix: { ext: string; tar: string }) {
  const files = args.length > 0 ? args : ['-'];
  const mode: FileCodecMode = flags.list ? 'list' : flags.test ? 'test' : flags.decompress ? 'decompress' : 'compress';
  if (flags.output && files.length > 1) throw fail('BAD_ARGUMENT', '-o takes one input file');
  if (flags.output && flags.stdout) throw fail('BAD_ARGUMENT', '-c and -o cannot go together; give one');
  const toStdout = Boolean(flags.stdout) || (files.length === 1 && files[0] === '-' && !flags.output);
  if (mode === 'compress' && toStdout && !flags.output) refuseTerminalOutput(flags.force);
  if ((mode === 'decompress' || mode === 'test') && files.includes('-') && process.stdin.isTTY && !flags.force) throw fail('TERMINAL', 'read from');

  /** The output file for `file`, or undefined for stdout. */
  const outputName = (file: string, direction: 'compress' | 'decompress'): string | undefined => {
    if (toStdout || file === '-' || flags.output) return flags.output;
    if (direction === 'compress') {
      if (file.endsWith(suffix.ext) && !flags.force) throw fail('BAD_ARGUMENT', `already has the ${suffix.ext} suffix; use -f to compress it again`);
      return `${file}${suffix.ext}`;
    }
    if (file.endsWith(suffix.ext)) return file.slice(0, -suffix.ext.length);
    if (file.endsWith(suffix.tar)) return `${file.slice(0, -suffix.tar.length)}.tar`;
    throw fail('BAD_ARGUMENT', `unknown suffix; expected ${suffix.ext} or ${suffix.tar} (use -c or -o)`);
  };

  /** The output: stdout, or a file that takes the input's owner, mode and times (`like`), sparse when decompressed. */
  const openOutput = async (path: string | undefined, like: Stats | undefined): Promise<{ sink: Sink; file?: AtomicFile }> => {
    if (path === undefined) {
      // A decompressed stdout that is a regular file gets holes too, as xz -dc > FILE gives it;
      // commit() then ends it (the output is no file of ours: nothing is renamed or removed).
      const holes = mode === 'decompress' ? sparseStdout() : undefined;
      return holes ? { sink: holes.sink, file: holes } : { sink: streamSink(process.stdout) };
    }
    const file = await createAtomicFile(path, { force: flags.force, like, sparse: mode === 'decompress' });
    return { sink: file.sink, file };
  };

  return {
    files,
    mode,
    toStdout,
    outputName,
    openOutput,
    /**
     * Compresses `file` (or stdin, `-`) into `outPath` (or stdout) with `how.write`: the output
     * takes the input's owner, mode and times and appears only once complete; with -v, one line
     * of sizes, ratio and speed.
     */
    async compressFile(file: string, outPath: string | undefined, how: CompressWith): Promise<void> {
      const like = file === '-' ? undefined : await stat(file); // before the first read moves its atime
      const source = file === '-' ? undefined : await fileSource(file);
      const input = source ? sequentialFromSource(source) : sequentialFromStream(process.stdin);
      const progress = progressLine(input.size, !how.quiet);
      let output: { sink: Sink; file?: AtomicFile } | undefined;
      try {
        const stored = await storedRangesOf(how.store, source);
        output = await openOutput(outPath, like);
        const started = Date.now();
        const result = await how.write(input, output.sink, stored, progress.update);
        progress.finish();
        await how.finish(file, output.file);
        if (how.verbose && !how.quiet) {
          const seconds = (Date.now() - started) / 1000;
          process.stderr.write(
            `${file}: ${formatSize(result.uncompressedSize)} -> ${formatSize(result.compressedSize)} ` +
              `(${(result.compressedSize / Math.max(1, result.uncompressedSize)).toFixed(3)}), ${result.units}, ` +
              `${result.storedBytes > 0 ? `${formatSize(result.storedBytes)} stored (editable), ` : ''}${formatSize(result.uncompressedSize / Math.max(seconds, 1e-3))}/s\n`,
          );
        }
      } catch (error) {
        progress.finish();
        await output?.file?.abort();
        throw error;
      } finally {
        await source?.close();
      }
    },
    /**
     * Decompresses (or, with -t, tests) stdin: a pipe cannot be read from its end, so `decode`
     * streams it; the output file, if any, appears only when the stream decoded completely.
     */
    async decompressStdin(outPath: string | undefined, decode: (input: AsyncIterable<Uint8Array>, emit: (bytes: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
      const output = mode === 'test' ? undefined : await openOutput(outPath, undefined);
      try {
        await decode(process.stdin, async (bytes) => output?.sink.write(bytes));
        await output?.file?.commit();
      } catch (error) {
        await output?.file?.abort();
        throw error;
      }
    },
    /** Runs `work` on each file in turn, naming it in messages; one file's error ends the run only when it is the only file. */
    async forEachFile(work: (file: string) => Promise<void>): Promise<void> {
      for (const file of files) {
        workingOn(file);
        try {
          await work(file);
        } catch (error) {
          if (files.length === 1) throw error;
          reportAndContinue(error);
        }
      }
    },
  };
}

/**
 * Opens `file` with a format's decoder; when the decoder refuses the file (a damaged footer, a
 * reserved flag), the file and `cleanup` (a worker pool) are released before the error goes on,
 * so no handle is left for the garbage collector to close (Node warns on stderr when it does).
 */
export async function openFileWith<T>(file: string, decode: (source: Source) => Promise<T>, cleanup?: () => Promise<void>): Promise<T> {
  const source = await fileSource(file).catch(async (error: unknown) => {
    await cleanup?.();
    throw error;
  });
  try {
    return await decode(source);
  } catch (error) {
    await source.close();
    await cleanup?.();
    throw error;
  }
}
