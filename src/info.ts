/**
 * What a compressed file says about itself, as data (`CompressedFile.info()`); `seekz info` prints
 * it. An xz file's blocks are listed as its index records, each held against its block header; a
 * gzip file seekz did not write costs one checked pass to list its members.
 */
import { fail } from './errors.js';
import { checkName } from './xz/format.js';
import type { XzBlock, XzStream } from './xz/reader.js';
import { buildGzipIndex, type GzipMember } from './gzip/index/build.js';
import type { GzipEnd } from './gzip/index/types.js';
import { readGzipLayout } from './gzip/layout.js';
import type { Decoder } from './open.js';
import type { Source } from './source/source.js';
import type { ZstdFrame, ZstdLayout } from './zstd/reader.js';

/** What `seekz info` prints, as data: `(await file.info()).format` tells which shape. */
export type FileInfo = XzInfo | GzipInfo | ZstdInfo;

export interface ZstdInfo {
  format: 'zstd';
  compressedSize: number;
  uncompressedSize: number;
  /** How frames are found: the seek table, the frame headers, or none (read as a stream). */
  layout: ZstdLayout;
  /** Every data frame, with what its header says (as `zstd -lv`, one line each). */
  frames: (ZstdFrame & { windowSize: number; dictionaryId: number; checksum: boolean })[];
  skippableFrames: number;
  /** Whether the seek table carries a checksum per frame. */
  tableChecksums: boolean;
  /**
   * Uncompressed ranges that `patch` can overwrite in place, END exclusive: frames made only of
   * raw blocks (seekzstd --store; found by reading the header and block headers of every frame
   * whose sizes say it could be one).
   */
  editable: { start: number; end: number }[];
}

export interface XzInfo {
  format: 'xz';
  compressedSize: number;
  uncompressedSize: number;
  /** Every block's index record, each held against its block header (as `xz --list -vv`). */
  blocks: XzBlock[];
  streams: XzStream[];
  /** Integrity check names used by the streams: crc32, crc64, sha256, none. */
  checks: string[];
  streamPadding: number;
  /**
   * Uncompressed ranges that `patch` can overwrite in place, END exclusive: blocks made only of
   * LZMA2 uncompressed chunks (seekxz --store; found by reading the header and chunk headers of
   * every block the index says is big enough to be one).
   */
  editable: { start: number; end: number }[];
}

export interface GzipInfo {
  format: 'gzip';
  compressedSize: number;
  uncompressedSize: number;
  /** The member's CRC-32 (a file with one member). */
  crc?: number;
  /** The seekz map of a file partial-deflate wrote: checkpoints, and whether each chunk has its CRC-32. */
  map?: { version: number; checkpoints: number; chunkSize: number; groupChunks: number; verified: boolean };
  /** A file seekz did not write: its members, each checked against its trailer in one pass. */
  members?: GzipMember[];
  /** What follows the last member, as gzip -d sees it (zero padding is ignored, anything else is trailing garbage). */
  end?: GzipEnd & { length: number };
  /**
   * How reads of a file without a map are checked: through the index file `index` (every span
   * against its CRC-32, or with `checked: 'structure'` only its length and block bounds), or
   * through an index built in memory on open (always with CRC-32s).
   */
  reads?: { index?: string; checked: 'crc' | 'structure' };
  /** Uncompressed ranges that `patch` can overwrite in place, END exclusive. */
  editable: { start: number; end: number }[];
  /** Why nothing is editable, where the file's shape rules it out. */
  notEditable?: string;
}

export interface InfoOptions {
  /** A gzip file seekz did not write: compressed bytes done during its checked pass. */
  onProgress?: (compressedDone: number) => void;
  /** Told when the deflate stream is walked to find stored blocks (a file without a seekz map). */
  onWalk?: () => void;
}

/** Computes FileInfo for `open`'s CompressedFile.info(); `source` is the compressed file under `decoder`. */
export async function describe(
  decoder: Decoder,
  source: Source,
  context: InfoOptions & { sidecar?: string; members: GzipMember[] },
): Promise<FileInfo> {
  if (decoder.format === 'zstd') {
    // Frame headers are small reads; a file read as a stream has one pseudo-frame, the whole file.
    const frames = [];
    for (let index = 0; index < decoder.frames.length; index++) {
      const header = await decoder.frameHeader(index);
      frames.push({ ...decoder.frames[index]!, windowSize: header.windowSize, dictionaryId: header.dictionaryId, checksum: header.checksum });
    }
    return {
      format: 'zstd',
      compressedSize: decoder.fileSize,
      uncompressedSize: decoder.size,
      layout: decoder.layout,
      frames,
      skippableFrames: decoder.skippableFrames,
      tableChecksums: decoder.tableChecksums,
      editable: await (await (await import('./zstd/editable.js')).readZstdEditable(source)).editableRanges(),
    };
  }
  if (decoder.format === 'xz') {
    await decoder.checkHeaders();
    return {
      format: 'xz',
      compressedSize: decoder.fileSize,
      uncompressedSize: decoder.size,
      blocks: decoder.blocks,
      streams: decoder.streams,
      checks: [...new Set(decoder.streams.map((stream) => checkName(stream.checkId)))],
      streamPadding: decoder.streams.reduce((sum, stream) => sum + stream.padding, 0),
      editable: await (await (await import('./xz/editable.js')).readXzEditable(source)).editableRanges(),
    };
  }
  const base = { format: 'gzip' as const, compressedSize: source.size, uncompressedSize: decoder.size };
  if (decoder.map) {
    const layout = await readGzipLayout(source, { onWalk: context.onWalk });
    const map = decoder.map;
    return {
      ...base,
      crc: layout.crc,
      map: { version: map.version, checkpoints: map.segments.length, chunkSize: map.chunkSize, groupChunks: map.groupChunks, verified: map.verified },
      editable: layout.editableRanges(),
    };
  }
  // Members come from the pass that built the index on open; with an index file there was none,
  // so one checked pass lists them now (every member's CRC-32 and ISIZE, as gzip -t).
  let members = context.members;
  let end = decoder.index?.end;
  let uncompressedSize = decoder.size;
  if (context.sidecar !== undefined || members.length === 0) {
    members = [];
    const built = await buildGzipIndex(source, { onMember: (member) => members.push(member), onProgress: context.onProgress });
    // An index file that records no file size (gztool's) can belong to another file: the pass says.
    if (context.sidecar !== undefined && built.uncompressedSize !== decoder.size) {
      throw fail('INDEX_MISMATCH', `${context.sidecar} says ${decoder.size} bytes uncompressed, the file holds ${built.uncompressedSize}`);
    }
    end = built.end;
    uncompressedSize = built.uncompressedSize;
  }
  const info: GzipInfo = {
    ...base,
    uncompressedSize,
    members,
    reads: { index: context.sidecar, checked: decoder.verification ?? 'crc' },
    editable: [],
  };
  if (members.length === 1) info.crc = members[0]!.crc;
  if (end && end.after !== 'nothing') info.end = { ...end, length: source.size - end.offset };
  if (members.length === 1 && end?.after === 'nothing') info.editable = (await readGzipLayout(source, { onWalk: context.onWalk })).editableRanges();
  else info.notEditable = 'in-place edits need a single-member file with nothing after it';
  return info;
}
