#!/usr/bin/env node
/**
 * Start-up is part of every `seekz read`: only commander and the few small modules that parse the
 * command line load up front. Each command imports what it uses when it runs: `seekz read` of a
 * .gz loads neither liblzma, the HTTP client nor the NBD server (`seekz serve` alone loads
 * cli/serve.ts), and src/open.ts loads a format's decoder only once its magic bytes are seen.
 * The commands ship bundled (scripts/bundle.mjs): these lazy imports keep the bundle's modules
 * uninitialised, and their Node built-ins unloaded, until a command uses them. What a run requires
 * comes from a require hook; see test/cli-manners.test.ts.
 */
import { statSync } from 'node:fs';
import { Command, Option } from 'commander';
import type { PatchResult } from '../src/edit/patch.js';
import { fail, hex32 } from '../src/errors.js';
import { describeRanges } from '../src/edit/editable.js';
import type { GzipInfo } from '../src/info.js';
import { decoderOf, open, type Decoder } from '../src/open.js';
import type { GzipEnd } from '../src/gzip/index/types.js';
import type { IndexFormat } from '../src/gzip/index/formats.js';
import { createAtomicFile, sparseStdout, streamSink, writeStdout } from '../src/io/atomic-file.js';
import { fileSource } from '../src/source/file.js';
import type { Source } from '../src/source/source.js';
import { formatSize, parseRange, parseSize } from '../src/size.js';
import { parseInteger, progressLine, runCli, shellManners, warn, workingOn, workingOnSeekable } from './common.js';

const program = shellManners(new Command('seekz')).description('Seekable, editable compressed files: read, extract and patch in place.');

program
  .command('patch')
  .description(
    'Overwrite bytes of a .gz, .xz or .zst file in place, without recompressing. The bytes must lie in stored ' +
      'blocks or frames (see partial-deflate --store, seekxz --store, seekzstd --store). Only the changed bytes and the checks they ' +
      "change (gzip: the trailer; xz: the blocks' checks; zstd: the frames' XXH64, in the frame and the seek table) are written; an undo journal makes the edit " +
      'all-or-nothing even if the process is killed.',
  )
  .argument('<file>')
  .option('--offset <n>', 'uncompressed offset to write --data at')
  .option('--data <file>', "the new bytes ('-' for stdin)")
  .option('--from <region.img>', 'a region to write back (only the bytes that differ are written)')
  .option('--at <n>', 'uncompressed offset of --from')
  .option('--partition <n>', 'with --from: write it back at the start of partition N')
  .option('-q, --quiet', 'say nothing on success')
  .option('-v, --verbose', 'report bytes written and read, and the checks changed')
  .addHelpText('after', '\nExamples:\n  seekz patch disk.img.gz --offset 1MiB --data kernel-args.bin\n  seekz patch disk.img.gz --from boot.img --partition 1\n  seekz patch disk.img.xz --from boot.img --partition 1\n  seekz patch disk.img.zst --from boot.img --partition 1')
  .action(async (path: string, options) => {
    const onWalk = () => {
      if (!options.quiet) process.stderr.write(`seekz: ${path} has no seekz map; walking its deflate stream to find stored blocks (slower)\n`);
    };
    const { patchFile, patchFromRegion } = await import('../src/edit/patch.js');
    let result: PatchResult;
    if (options.from !== undefined) {
      if (options.data !== undefined || options.offset !== undefined) throw fail('BAD_ARGUMENT', 'use either --from with --at/--partition, or --data with --offset');
      const at = options.partition !== undefined ? (await partitionOf(path, options.partition)).start : requireSize(options.at, '--at');
      workingOn(options.from);
      const region = await fileSource(options.from);
      workingOn(path);
      try {
        result = await patchFromRegion(path, region, at, { onWalk });
      } finally {
        await region.close();
      }
    } else {
      if (options.data === undefined) throw fail('BAD_ARGUMENT', 'give --data FILE with --offset N, or --from REGION with --at N');
      const offset = requireSize(options.offset, '--offset');
      workingOn(options.data);
      const data = options.data === '-' ? await readStdin() : await readWhole(options.data);
      workingOn(path);
      result = await patchFile(path, [{ offset, data }], { onWalk });
    }
    if (result.recovered === 'rolled-back' && !options.quiet) process.stderr.write(`seekz: rolled back an interrupted edit of ${path} first\n`);
    if (options.verbose && !options.quiet) {
      process.stderr.write(
        `${path}: wrote ${result.bytesWritten} bytes, read ${result.bytesRead} bytes (${formatSize(result.bytesRead)}) of the file; ` +
          `${result.checks}\n`,
      );
    }
  });

program
  .command('extract')
  .description('Copy a region of the uncompressed data of a .gz, .xz or .zst file (or URL) out, e.g. a partition to edit with debugfs or mtools.')
  .argument('<file>')
  .option('--partition <n>', "partition N of the disk image's MBR or GPT")
  .option('--range <start:end>', 'uncompressed byte range, END exclusive')
  .requiredOption('-o, --output <file>', "where to write ('-' for stdout)")
  .option('-f, --force', 'overwrite the output if it exists')
  .option('-q, --quiet', 'no progress line')
  .action(async (path: string, options) => {
    if ((options.partition === undefined) === (options.range === undefined)) throw fail('BAD_ARGUMENT', 'give exactly one of --partition N or --range START:END');
    const range = options.range !== undefined ? parseRange(options.range) : undefined;
    await withCompressed(path, async (data) => {
      const { start, end } = range ?? (await partitionRange(data, options.partition));
      if (end > data.size) throw fail('OUT_OF_RANGE', 'range', start, end - start, data.size);
      await copyOut(data, start, end, options.output, options.force, options.quiet);
    });
  });

program
  .command('index')
  .description(
    'Build an index of access points for any gzip file, so reads start near their offset. ' +
      'seekz read/cat/extract/serve find it beside the file. Files written by partial-deflate need none.',
  )
  .argument('<file.gz>')
  .option('--spacing <size>', 'uncompressed bytes between access points', '4MiB')
  .option('-o, --output <file>', 'index file (default FILE.gz.idx; gztool format: FILE.gzi)')
  .addOption(new Option('--format <format>', 'seekz (compact), gzidx (indexed_gzip, rapidgzip) or gztool').choices(['seekz', 'gzidx', 'gztool']).default('seekz'))
  .option('-f, --force', 'overwrite the index if it exists')
  .option('-q, --quiet', 'no progress line')
  .option('-v, --verbose', 'print points, sizes and speed')
  .action(async (path: string, options) => {
    const spacing = parseSize(options.spacing);
    workingOnSeekable(path);
    const { buildIndex } = await import('../src/build-index.js');
    const progress = progressLine(statSync(path).size, !options.quiet);
    const started = Date.now();
    try {
      const built = await buildIndex(path, {
        spacing,
        format: options.format as IndexFormat,
        output: options.output,
        force: options.force,
        onProgress: progress.update,
        onRecovered: (outcome) => saidRecovered(path, outcome),
      });
      progress.finish();
      warnTrailing(path, built.end, built.compressedSize);
      if (options.verbose && !options.quiet) {
        const seconds = (Date.now() - started) / 1000;
        process.stderr.write(
          `${built.output}: ${built.points} access points over ${formatSize(built.uncompressedSize)}, ` +
            `${formatSize(built.bytes)} (${built.format}), ${formatSize(built.compressedSize / Math.max(seconds, 1e-3))}/s of compressed input\n`,
        );
      }
    } finally {
      progress.finish();
    }
  });

program
  .command('read')
  .description('Read uncompressed bytes at any offset of a .gz, .xz or .zst file, decompressing only what holds them.')
  .argument('<file>')
  .requiredOption('--offset <n>', 'uncompressed offset')
  .requiredOption('--length <n>', 'bytes to read')
  .option('-o, --output <file>', "where to write (default stdout; '-' too)")
  .option('-f, --force', 'overwrite the output if it exists')
  .action(async (path: string, options) => {
    const offset = parseSize(options.offset);
    const length = parseSize(options.length);
    await withCompressed(path, async (data) => {
      if (offset > data.size) throw fail('OUT_OF_RANGE', 'read', offset, length, data.size);
      await copyOut(data, offset, Math.min(offset + length, data.size), options.output ?? '-', options.force, true);
    });
  });

program
  .command('cat')
  .description('Write the whole uncompressed data to stdout (like zcat / xzcat), or to a file with -o.')
  .argument('<file>')
  .option('-o, --output <file>', "where to write (default stdout; '-' too); a file gets holes for zero blocks")
  .option('-f, --force', 'overwrite the output if it exists')
  .action(async (path: string, options) => {
    await withCompressed(path, (data) => copyOut(data, 0, data.size, options.output ?? '-', options.force, true));
  });

program
  .command('info')
  .description('Show what a .gz, .xz or .zst file says about itself: sizes, blocks, frames or checkpoints, editable ranges.')
  .argument('<file>')
  .action(async (path: string) => {
    workingOnSeekable(path);
    const progress = progressLine(undefined, true);
    await using file = await open(path, { onRecovered: (outcome) => saidRecovered(path, outcome), onProgress: progress.update });
    const info = await file.info({ onProgress: progress.update, onWalk: () => process.stderr.write(`seekz: ${path} has no seekz map; walking its deflate stream\n`) });
    progress.finish();
    if (info.format === 'xz') {
      const { listing } = await import('./xz-listing.js');
      await writeStdout(listing(path, { fileSize: info.compressedSize, size: info.uncompressedSize, streams: info.streams, blocks: info.blocks }));
      await writeStdout(`editable: ${describeRanges(info.editable)}\n`);
      return;
    }
    if (info.format === 'zstd') return writeStdout(`${(await import('./zstd-listing.js')).zstdListing(path, info)}editable: ${describeRanges(info.editable)}\n`);
    await writeStdout(gzipInfoLines(path, info).join('\n') + '\n');
    warnTrailing(path, info.end, info.compressedSize);
  });

/** `seekz info` of a gzip file: its sizes, then its map, or its members and how reads are checked. */
function gzipInfoLines(path: string, info: GzipInfo): string[] {
  const members = info.members ?? [];
  const lines = [
    `file: ${path}`,
    info.map ? 'format: gzip (seekz partial-deflate, with map)' : `format: gzip, ${members.length === 1 ? '1 member' : `${members.length} members`}${members.every((member) => member.bgzf) ? ' (BGZF)' : ''}`,
    `compressed: ${info.compressedSize} bytes (${formatSize(info.compressedSize)})`,
    `uncompressed: ${info.uncompressedSize} bytes (${formatSize(info.uncompressedSize)})`,
    `ratio: ${(info.compressedSize / Math.max(1, info.uncompressedSize)).toFixed(4)}`,
  ];
  if (info.map) {
    const { map } = info;
    return [
      ...lines,
      `crc32: ${hex32(info.crc!)}`,
      `checkpoints: ${map.checkpoints} (chunk ${formatSize(map.chunkSize)} x ${map.groupChunks})`,
      `editable: ${describeRanges(info.editable)}`,
      `verified: ${map.verified ? 'crc-32 per chunk' : `no (map version ${map.version}; rewrite with partial-deflate for checked reads)`}`,
    ];
  }
  if (members.length === 1) lines.push(`crc32: ${hex32(info.crc!)}`);
  else {
    lines.push(`members: ${members.length} (all CRC-32 and ISIZE checked)`);
    for (const member of members.slice(0, 8)) {
      lines.push(`  member ${member.number}: offset ${member.offset}, compressed ${member.compressedLength}, uncompressed ${member.uncompressedLength}, crc32 ${hex32(member.crc)}`);
    }
    if (members.length > 8) lines.push(`  … and ${members.length - 8} more`);
  }
  const end = info.end;
  if (end) lines.push(`after the last member: ${end.length} bytes of ${end.after === 'zeros' ? 'zero padding (ignored, as gzip -d does)' : 'trailing garbage (ignored with a warning, as gzip -d does)'}, at offset ${end.offset}`);
  const index = info.reads?.index;
  const reads =
    index === undefined
      ? 'no index file; one is built in memory on open, with a CRC-32 per span: every read checked'
      : info.reads!.checked === 'crc'
        ? `through ${index}: every span checked against its CRC-32`
        : `through ${index} (no checksums): every span checked for its exact length and block boundaries; whole members against their trailers when read through (cat); rebuild with seekz index for checked random reads`;
  lines.push('checkpoints: none', `reads: ${reads}`, `editable: ${info.notEditable ? `none (${info.notEditable})` : describeRanges(info.editable)}`);
  return lines;
}

async function withCompressed(path: string, work: (data: Decoder) => Promise<void>, quiet = false): Promise<void> {
  const onBuildIndex = () => {
    if (!quiet) process.stderr.write(`seekz: ${path} has no index; building one in memory (one pass; 'seekz index ${path}' keeps one)\n`);
  };
  workingOnSeekable(path);
  const file = await open(path, { onBuildIndex, onRecovered: (outcome) => saidRecovered(path, outcome) });
  const data = decoderOf(file);
  try {
    await work(data);
  } finally {
    await file.close();
  }
  if (data.format === 'gzip') warnTrailing(path, data.end);
}

/** gzip -d's warning for bytes after the last member that are not zero padding: the data is complete, exit 2. */
function warnTrailing(path: string, end: GzipEnd | undefined, fileSize?: number): void {
  if (end?.after !== 'garbage') return;
  const size = fileSize ?? (/^https?:\/\//i.test(path) ? undefined : statSync(path).size);
  warn(fail('GZIP_TRAILING_GARBAGE', end.offset, size !== undefined ? size - end.offset : 0), path);
}

function saidRecovered(path: string, outcome: PatchResult['recovered']): void {
  if (outcome === 'rolled-back') process.stderr.write(`seekz: rolled back an interrupted edit of ${path} first\n`);
  if (outcome === 'discarded-incomplete') process.stderr.write(`seekz: removed the unfinished journal of an edit of ${path} that never began\n`);
}

/**
 * Copies [start, end) of `data` to a file or stdout in 4 MiB pieces, with a progress line on a TTY.
 * Zero 4 KiB blocks are left as holes in a file, and in a stdout that is a regular file as
 * `xz -dc > FILE` leaves them (sparseStdout); other stdouts get every byte.
 */
async function copyOut(data: Source, start: number, end: number, path: string, force: boolean, quiet: boolean): Promise<void> {
  const output = path === '-' ? sparseStdout() : await createAtomicFile(path, { force, sparse: true });
  const sink = output ? output.sink : streamSink(process.stdout);
  const progress = progressLine(end - start, !quiet);
  try {
    const piece = 4 << 20;
    for (let at = start; at < end; at += piece) {
      await sink.write(await data.read(at, Math.min(piece, end - at)));
      progress.update(Math.min(end, at + piece) - start);
    }
    progress.finish();
    await output?.commit();
  } catch (error) {
    progress.finish();
    await output?.abort();
    throw error;
  }
}

function requireSize(text: string | undefined, flag: string): number {
  if (text === undefined) throw fail('BAD_ARGUMENT', `${flag} is required`);
  return parseSize(text);
}

async function partitionRange(data: Source, text: string): Promise<{ start: number; end: number }> {
  const { findPartition } = await import('../src/disk/partitions.js');
  const partition = await findPartition(data, parseInteger(text, 'partition number', 1, 65536));
  return { start: partition.start, end: partition.start + partition.size };
}

/** Where partition N starts, opened the way every other subcommand opens a file (journal, sidecar index). */
async function partitionOf(path: string, text: string): Promise<{ start: number }> {
  let start = 0;
  await withCompressed(path, async (data) => void (start = (await partitionRange(data, text)).start), true);
  return { start };
}

async function readWhole(path: string): Promise<Uint8Array> {
  const source = await fileSource(path);
  try {
    return await source.read(0, source.size);
  } finally {
    await source.close();
  }
}

async function readStdin(): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const part of process.stdin) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

/**
 * `seekz serve` brings the NBD server and the HTTP client, so its definition loads only when it may
 * run or be listed: the command is serve, or no other command is named (help, a typo).
 */
async function addServe(argv: string[]): Promise<void> {
  const named = argv.slice(2).find((arg) => !arg.startsWith('-'));
  const others = program.commands.map((command) => command.name());
  if (named !== undefined && named !== 'serve' && others.includes(named)) return;
  if (named === undefined && (argv.includes('-V') || argv.includes('--version'))) return;
  const { addServeCommand } = await import('./serve.js');
  addServeCommand(program);
}

runCli('seekz', async () => {
  await addServe(process.argv);
  await program.parseAsync(process.argv);
});
