import { fail } from './errors.js';

const UNIT: Record<string, number> = {
  '': 1,
  k: 1024, kib: 1024, kb: 1024,
  m: 1024 ** 2, mib: 1024 ** 2, mb: 1024 ** 2,
  g: 1024 ** 3, gib: 1024 ** 3, gb: 1024 ** 3,
  t: 1024 ** 4, tib: 1024 ** 4, tb: 1024 ** 4,
};

/**
 * Parses a byte count the way xz and qemu-img users write it: `4096`, `0x1000`, `16M`, `16MiB`.
 * K/M/G/T are binary (1024-based), as in xz, qemu-img and sfdisk.
 */
export function parseSize(text: string): number {
  const trimmed = text.trim();
  let value: number;
  if (/^0x[0-9a-f]+$/i.test(trimmed)) {
    value = Number.parseInt(trimmed.slice(2), 16);
  } else {
    const match = /^(\d+)\s*([a-z]*)$/i.exec(trimmed);
    const unit = match ? UNIT[match[2]!.toLowerCase()] : undefined;
    if (!match || unit === undefined) throw fail('BAD_SIZE', text);
    value = Number(match[1]) * unit;
  }
  if (!Number.isSafeInteger(value)) throw fail('BAD_SIZE', text);
  return value;
}

/** Parses `START:END` (END exclusive) into a half-open range. */
export function parseRange(text: string): { start: number; end: number } {
  const parts = text.split(':');
  if (parts.length !== 2) throw fail('BAD_ARGUMENT', `range '${text}' must be START:END, e.g. 1M:101M`);
  const start = parseSize(parts[0]!);
  const end = parseSize(parts[1]!);
  if (end < start) throw fail('BAD_ARGUMENT', `range '${text}' ends (${end}) before it starts (${start})`);
  return { start, end };
}

/** 1536 → "1.5 KiB": for messages and progress, never parsed back. */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}
