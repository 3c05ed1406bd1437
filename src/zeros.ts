const ZEROS = new Uint8Array(1 << 20);
const ZERO_BUFFER = Buffer.from(ZEROS.buffer);

/** True when every byte is zero: a memcmp per MiB, so zero runs of a disk image cost almost nothing. */
export function isAllZero(data: Uint8Array): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const piece = data.subarray(at, Math.min(data.length, at + ZEROS.length));
    if (!Buffer.from(piece.buffer, piece.byteOffset, piece.length).equals(ZEROS.subarray(0, piece.length))) return false;
  }
  return true;
}

/** The unit of holes: a filesystem block on ext4, xfs, btrfs and tmpfs. */
export const HOLE_BLOCK = 4096;
/** Zeros are looked for this many bytes at a time first: one memcmp, no per-block call, over a run of zeros. */
const HOLE_GROUP = 16 * HOLE_BLOCK;

/**
 * The parts of `bytes`, which go to file offset `at`, that must be written when whole zero blocks
 * of HOLE_BLOCK bytes (aligned to the file, not to `bytes`) are left as holes: [from, to) pairs
 * relative to `bytes`, in order. No hole starts before file offset `holesFrom` (what is written
 * already must not be hidden). A zero run costs one memcmp per HOLE_GROUP; a data block stops its
 * memcmp at its first nonzero byte.
 */
export function dataRuns(bytes: Uint8Array, at: number, holesFrom = 0): Array<[number, number]> {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const runs: Array<[number, number]> = [];
  let from = 0; // start of the data run not yet closed
  let cut = Math.ceil(Math.max(at, holesFrom) / HOLE_BLOCK) * HOLE_BLOCK - at; // the first block that may be a hole
  const zeroAt = (start: number, length: number) => ZERO_BUFFER.compare(view, start, start + length, 0, length) === 0;
  while (cut + HOLE_BLOCK <= bytes.length) {
    let length = 0;
    if (cut + HOLE_GROUP <= bytes.length && zeroAt(cut, HOLE_GROUP)) length = HOLE_GROUP;
    else if (zeroAt(cut, HOLE_BLOCK)) length = HOLE_BLOCK;
    if (length === 0) {
      cut += HOLE_BLOCK;
      continue;
    }
    if (cut > from) runs.push([from, cut]);
    cut += length;
    from = cut;
  }
  if (from < bytes.length) runs.push([from, bytes.length]);
  return runs;
}

/**
 * `data`, which starts at stream offset `at`, cut at the edges of its all-zero grains: the
 * `grain`-byte pieces aligned to the stream (not to `data`) whose bytes are all zero. Returns the
 * runs in order as [from, to, zero] relative to `data`; adjacent zero grains form one run, and a
 * partial grain at either end belongs to the data around it. One memcmp per grain.
 */
export function zeroGrainRuns(data: Uint8Array, at: number, grain: number): Array<[from: number, to: number, zero: boolean]> {
  const runs: Array<[number, number, boolean]> = [];
  let from = 0; // start of the run not yet closed
  let zero = false;
  for (let start = ((grain - (at % grain)) % grain); start + grain <= data.length; start += grain) {
    const isZero = isAllZero(data.subarray(start, start + grain));
    if (isZero === zero) continue;
    if (start > from) runs.push([from, start, zero]);
    from = start;
    zero = isZero;
  }
  // A zero run ends at its last whole grain; what follows is data.
  if (zero) {
    const end = from + Math.floor((data.length - from) / grain) * grain;
    runs.push([from, end, true]);
    from = end;
    zero = false;
  }
  if (from < data.length) runs.push([from, data.length, false]);
  return runs;
}
