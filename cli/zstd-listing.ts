import type { ZstdInfo } from '../src/info.js';
import { formatSize } from '../src/size.js';

const pad = (value: number | string, width: number) => String(value).padStart(width);
const hex = (value: number) => value.toString(16).padStart(8, '0');

/** The shape of `zstd -lv` (totals), then one line per frame, as `seekz info` and `seekzstd -l` print it. */
export function zstdListing(file: string, info: ZstdInfo): string {
  const { frames } = info;
  const windows = [...new Set(frames.map((frame) => frame.windowSize))];
  const window = Math.max(0, ...windows);
  const checked = frames.length > 0 && frames.every((frame) => frame.checksum);
  const lines = [
    `${file}`,
    `# Zstandard Frames: ${info.layout === 'stream' ? '? (no content sizes: read as a stream)' : frames.length}`,
  ];
  if (info.skippableFrames > 0) lines.push(`# Skippable Frames: ${info.skippableFrames}`);
  lines.push(
    `DictID: ${Math.max(0, ...frames.map((frame) => frame.dictionaryId))}`,
    `Window Size: ${formatSize(window)} (${window} B)`, // the largest; zstd -lv prints the last frame's
    `Compressed Size: ${formatSize(info.compressedSize)} (${info.compressedSize} B)`,
    `Decompressed Size: ${formatSize(info.uncompressedSize)} (${info.uncompressedSize} B)`,
    `Ratio: ${(info.uncompressedSize / Math.max(1, info.compressedSize)).toFixed(4)}`,
    `Check: ${checked ? 'XXH64' : frames.some((frame) => frame.checksum) ? 'Mixed' : 'None'}`,
    `Seekable: ${info.layout === 'seekable' ? `yes (seek table${info.tableChecksums ? ' with checksums' : ''})` : info.layout === 'frames' ? 'yes (index from frame headers)' : 'no (recompress with seekzstd for random reads)'}`,
  );
  if (info.layout !== 'stream') {
    lines.push('Frames:', '     Frame      CompOffset    UncompOffset        CompSize      UncompSize       Ratio  Checksum');
    for (const frame of frames) {
      const checksum = frame.tableChecksum !== undefined ? hex(frame.tableChecksum) : frame.checksum ? 'XXH64' : 'none';
      lines.push(
        `${pad(frame.number, 10)}${pad(frame.offset, 16)}${pad(frame.uStart, 16)}${pad(frame.compressedSize, 16)}${pad(frame.uSize, 16)}  ${pad((frame.uSize / Math.max(1, frame.compressedSize)).toFixed(3), 10)}  ${checksum}`,
      );
    }
  }
  return lines.join('\n') + '\n';
}
