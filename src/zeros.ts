const ZEROS = new Uint8Array(1 << 20);

/** True when every byte is zero: a memcmp per MiB, so zero runs of a disk image cost almost nothing. */
export function isAllZero(data: Uint8Array): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const piece = data.subarray(at, Math.min(data.length, at + ZEROS.length));
    if (!Buffer.from(piece.buffer, piece.byteOffset, piece.length).equals(ZEROS.subarray(0, piece.length))) return false;
  }
  return true;
}
