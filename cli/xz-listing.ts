import { formatSize } from '../src/size.js';
import { checkName } from '../src/xz/format.js';
import type { XzSource } from '../src/xz/reader.js';

/** The shape of `xz --list -v`: totals, then streams, then blocks. */
export function listing(file: string, xz: Pick<XzSource, 'fileSize' | 'size' | 'streams' | 'blocks'>): string {
  const compressed = xz.fileSize;
  const ratio = (xz.size === 0 ? 0 : compressed / xz.size).toFixed(3);
  const checks = [...new Set(xz.streams.map((stream) => checkName(stream.checkId)))].join(',');
  const lines = [
    `${file} (1/1)`,
    `  Streams:           ${xz.streams.length}`,
    `  Blocks:            ${xz.blocks.length}`,
    `  Compressed size:   ${formatSize(compressed)} (${compressed} B)`,
    `  Uncompressed size: ${formatSize(xz.size)} (${xz.size} B)`,
    `  Ratio:             ${ratio}`,
    `  Check:             ${checks}`,
    `  Stream Padding:    ${xz.streams.reduce((sum, stream) => sum + stream.padding, 0)} B`,
    '  Streams:',
    '    Stream    Blocks      CompOffset    UncompOffset        CompSize      UncompSize  Ratio  Check      Padding',
  ];
  let uncompressedOffset = 0;
  for (const stream of xz.streams) {
    const blocks = xz.blocks.filter((block) => block.stream === stream.number);
    const uSize = blocks.reduce((sum, block) => sum + block.uSize, 0);
    lines.push(
      `    ${pad(stream.number, 6)}${pad(stream.blocks, 10)}${pad(stream.offset, 16)}${pad(uncompressedOffset, 16)}${pad(stream.size, 16)}${pad(uSize, 16)}  ${(uSize ? stream.size / uSize : 0).toFixed(3)}  ${checkName(stream.checkId).padEnd(6)}${pad(stream.padding, 12)}`,
    );
    uncompressedOffset += uSize;
  }
  lines.push('  Blocks:', '    Stream     Block      CompOffset    UncompOffset       TotalSize      UncompSize  Ratio  Check');
  for (const block of xz.blocks) {
    lines.push(
      `    ${pad(block.stream, 6)}${pad(block.number, 10)}${pad(block.offset, 16)}${pad(block.uStart, 16)}${pad(block.totalSize, 16)}${pad(block.uSize, 16)}  ${(block.uSize ? block.totalSize / block.uSize : 0).toFixed(3)}  ${checkName(block.checkId)}`,
    );
  }
  return lines.join('\n') + '\n';
}

function pad(value: number, width: number): string {
  return String(value).padStart(width);
}
