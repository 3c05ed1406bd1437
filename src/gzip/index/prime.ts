/**
 * Resuming inflation in the middle of a byte, with node:zlib, which has no inflatePrime().
 *
 * An access point's block can start at any bit. Shifting the compressed bytes would move every
 * later stored block off its byte boundary, so instead the bytes stay where they are and a
 * preface of empty deflate blocks is put in front, exactly as long (mod 8) as the bits of the
 * first byte that must be skipped: those bits are overwritten with the preface's last bits.
 * Empty blocks produce no output, so the window (dictionary) is unchanged.
 *
 * An empty fixed-Huffman block is 10 bits (≡ 2 mod 8), so fixed blocks alone reach only even
 * lengths. For odd lengths a 93-bit empty dynamic block is used: its literal/length code holds
 * only end-of-block (one 1-bit code, which zlib accepts as the single-code exception), its
 * distance code is empty, and the code-length code {18: 2 bits, 1: 1 bit, 0: 2 bits} makes the
 * total odd. 93 ≡ 5 (mod 8); with 0–3 fixed blocks after it, every odd residue is reachable.
 */
class BitWriter {
  private readonly bytes: number[] = [];
  private bitCount = 0;
  /** Appends `count` bits of `value`, least significant first (deflate's bit order). */
  bits(value: number, count: number): this {
    for (let index = 0; index < count; index++) {
      if (this.bitCount % 8 === 0) this.bytes.push(0);
      this.bytes[this.bytes.length - 1]! |= ((value >>> index) & 1) << this.bitCount % 8;
      this.bitCount++;
    }
    return this;
  }
  /** Appends a Huffman code: deflate sends its most significant bit first. */
  code(value: number, length: number): this {
    for (let index = length - 1; index >= 0; index--) this.bits((value >>> index) & 1, 1);
    return this;
  }
  get length(): number {
    return this.bitCount;
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

function emptyFixedBlock(writer: BitWriter): void {
  writer.bits(0, 1).bits(1, 2); // BFINAL=0, BTYPE=01
  writer.code(0, 7); // end-of-block: fixed code 256 is 0000000
}

// Code-length code order (RFC 1951 §3.2.7).
const CODE_LENGTH_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

function emptyDynamicBlock(writer: BitWriter): void {
  writer.bits(0, 1).bits(2, 2); // BFINAL=0, BTYPE=10
  writer.bits(0, 5); // HLIT: 257 literal/length codes
  writer.bits(0, 5); // HDIST: 1 distance code
  writer.bits(18 - 4, 4); // HCLEN: 18 code-length codes, enough to reach symbol 1
  // Canonical code-length code: lengths 18→2, 1→1, 0→2 give codes 1→0, 0→10, 18→11.
  const lengths: Record<number, number> = { 18: 2, 1: 1, 0: 2 };
  for (const symbol of CODE_LENGTH_ORDER.slice(0, 18)) writer.bits(lengths[symbol] ?? 0, 3);
  const codes: Record<number, number> = { 1: 0b0, 0: 0b10, 18: 0b11 };
  // 256 zero lengths (literals 0–255), then 1 for end-of-block, then 0 for the one distance code.
  writer.code(codes[18]!, 2).bits(138 - 11, 7);
  writer.code(codes[18]!, 2).bits(118 - 11, 7);
  writer.code(codes[1]!, 1);
  writer.code(codes[0]!, 2);
  writer.code(0, 1); // end-of-block: the only literal/length code, 1 bit
}

/** Bit length of the preface is 8m + `residue`. Built once per residue. */
const prefaces = new Map<number, { bytes: Uint8Array; bitLength: number }>();

function preface(residue: number): { bytes: Uint8Array; bitLength: number } {
  let cached = prefaces.get(residue);
  if (!cached) {
    const writer = new BitWriter();
    let fixedBlocks = residue / 2;
    if (residue % 2 === 1) {
      emptyDynamicBlock(writer); // 93 bits ≡ 5
      fixedBlocks = ((residue - 5 + 8) % 8) / 2;
    }
    for (let index = 0; index < fixedBlocks; index++) emptyFixedBlock(writer);
    if (writer.length % 8 !== residue) throw new Error(`seekz: preface for residue ${residue} came out ${writer.length} bits`);
    cached = { bytes: writer.finish(), bitLength: writer.length };
    prefaces.set(residue, cached);
  }
  return cached;
}

/**
 * `compressed` starts with the byte whose top `bits` bits (1–7) begin a deflate block. Returns a
 * raw deflate stream that inflates exactly as the stream from that block would.
 */
export function primeCompressed(compressed: Uint8Array, bits: number): Uint8Array {
  const residue = 8 - bits; // low bits of the first byte that belong to the previous block
  const { bytes, bitLength } = preface(residue);
  const whole = Math.floor(bitLength / 8);
  const out = new Uint8Array(whole + compressed.length);
  out.set(bytes.subarray(0, whole), 0);
  out.set(compressed, whole);
  const tail = bytes[whole]! & ((1 << residue) - 1);
  out[whole] = (compressed[0]! & ~((1 << residue) - 1) & 0xff) | tail;
  return out;
}

/**
 * `compressed` is cut at bit `stopBit` (counted from bit 0 of its byte 0), and an empty final
 * fixed block (BFINAL=1, BTYPE=01, end-of-block 0000000: 10 bits) takes the place of what
 * follows. Inflating the result reaches the end of the stream with every byte used only when
 * `stopBit` is a block boundary; anywhere else the inserted bits decode as data.
 */
export function endWithEmptyFinalBlock(compressed: Uint8Array, stopBit: number): Uint8Array {
  const whole = stopBit >>> 3;
  const residue = stopBit & 7;
  const out = new Uint8Array(whole + Math.ceil((residue + 10) / 8));
  out.set(compressed.subarray(0, whole), 0);
  // Low `residue` bits of the cut byte are the span's last bits; the block's bits go above them:
  // BFINAL 1, BTYPE 01 (least significant bit first), then seven zero bits.
  const bits = (residue > 0 ? compressed[whole]! & ((1 << residue) - 1) : 0) | (0b011 << residue);
  for (let at = whole, value = bits; at < out.length; at++, value >>>= 8) out[at] = value & 0xff;
  return out;
}
