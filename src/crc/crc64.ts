/**
 * CRC-64 as xz uses it (ECMA-182 polynomial, reflected: CRC-64/XZ), table-driven over two 32-bit
 * halves, slicing by 4 bytes; a BigInt only at the ends. The halves are kept as signed int32 (and
 * the tables as Int32Array): unsigned values above 2^31 are heap numbers in V8, which made the
 * loop 25 times slower (79 ms a MiB against about 3 ms). Check value: crc64("123456789") =
 * 0x995dc9bbdf1939fa, pinned in test/xz-edit.test.ts.
 */
const POLY_HIGH = 0xc96c5795 | 0;
const POLY_LOW = 0xd7870f42 | 0;
const MASK64 = (1n << 64n) - 1n;

/** TABLE_*[k][b]: the register contribution of byte b followed by k zero bytes (slicing by 4). */
const TABLE_LOW = Array.from({ length: 4 }, () => new Int32Array(256));
const TABLE_HIGH = Array.from({ length: 4 }, () => new Int32Array(256));
for (let byte = 0; byte < 256; byte++) {
  let low = byte;
  let high = 0;
  for (let bit = 0; bit < 8; bit++) {
    const carry = low & 1;
    low = (low >>> 1) | ((high & 1) << 31);
    high >>>= 1;
    if (carry) {
      low ^= POLY_LOW;
      high ^= POLY_HIGH;
    }
  }
  TABLE_LOW[0]![byte] = low;
  TABLE_HIGH[0]![byte] = high;
}
for (let slice = 1; slice < 4; slice++) {
  for (let byte = 0; byte < 256; byte++) {
    const low = TABLE_LOW[slice - 1]![byte]!;
    const high = TABLE_HIGH[slice - 1]![byte]!;
    const slot = low & 0xff;
    TABLE_LOW[slice]![byte] = ((low >>> 8) | (high << 24)) ^ TABLE_LOW[0]![slot]!;
    TABLE_HIGH[slice]![byte] = (high >>> 8) ^ TABLE_HIGH[0]![slot]!;
  }
}
const [L0, L1, L2, L3] = TABLE_LOW as [Int32Array, Int32Array, Int32Array, Int32Array];
const [H0, H1, H2, H3] = TABLE_HIGH as [Int32Array, Int32Array, Int32Array, Int32Array];

/** CRC-64/XZ of `data`, continuing from `previous` (the CRC of the bytes before it). */
export function crc64(data: Uint8Array, previous = 0n): bigint {
  const register = ~previous & MASK64;
  let low = Number(register & 0xffffffffn) | 0;
  let high = Number(register >> 32n) | 0;
  let index = 0;
  const whole = data.length - (data.length % 4);
  for (; index < whole; index += 4) {
    // Four bytes into the low half at once; the high half shifts by 32 bits into the low.
    const word = low ^ (data[index]! | (data[index + 1]! << 8) | (data[index + 2]! << 16) | (data[index + 3]! << 24));
    low = high ^ L3[word & 0xff]! ^ L2[(word >>> 8) & 0xff]! ^ L1[(word >>> 16) & 0xff]! ^ L0[word >>> 24]!;
    high = H3[word & 0xff]! ^ H2[(word >>> 8) & 0xff]! ^ H1[(word >>> 16) & 0xff]! ^ H0[word >>> 24]!;
  }
  for (; index < data.length; index++) {
    const slot = (low ^ data[index]!) & 0xff;
    low = ((low >>> 8) | (high << 24)) ^ L0[slot]!;
    high = (high >>> 8) ^ H0[slot]!;
  }
  return ~((BigInt(high >>> 0) << 32n) | BigInt(low >>> 0)) & MASK64;
}

// Combine math, as zlib's crc32_combine does it for CRC-32 (x2nmodp/multmodp), for CRC-64/XZ:
// in the reflected domain bit 63 is x^0, and a register times x^n mod P is that register carried
// over n zero bits. Since the preset and the final xor are both all ones, they cancel between two
// pieces: crc(A‖B) = crc(A)·x^(8·|B|) ⊕ crc(B). Pinned by test/crc.test.ts (property test against
// crc64 over the whole, and xz -t on a block patched this way).
const POLY = 0xc96c5795d7870f42n;
const X0 = 1n << 63n;

/** a·b mod P, both reflected. */
function multiplyModP(a: bigint, b: bigint): bigint {
  let product = 0n;
  for (let bit = X0; bit !== 0n; bit >>= 1n) {
    if (a & bit) {
      product ^= b;
      if ((a & (bit - 1n)) === 0n) break;
    }
    b = b & 1n ? (b >> 1n) ^ POLY : b >> 1n;
  }
  return product;
}

/** X2N[k] = x^(2^k) mod P, k = 0..63 (a byte count below 2^53 needs k up to 3 + 52). */
let X2N: bigint[] | undefined;

/** crc · x^(8·length) mod P: a CRC-64 register carried over `length` zero bytes. O(log length). */
export function crc64Shift(crc: bigint, length: number): bigint {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`crc64: length must be a non-negative safe integer, found ${length}`);
  if (!X2N) {
    X2N = [X0 >> 1n]; // x^1
    for (let k = 1; k < 64; k++) X2N.push(multiplyModP(X2N[k - 1]!, X2N[k - 1]!));
  }
  let register = crc & MASK64;
  for (let k = 3, rest = length; rest > 0; k++, rest = Math.floor(rest / 2)) {
    if (rest % 2) register = multiplyModP(X2N[k]!, register);
  }
  return register;
}

/** CRC-64/XZ of A‖B from crc(A), crc(B) and |B|. */
export function crc64Combine(crcA: bigint, crcB: bigint, lengthB: number): bigint {
  return crc64Shift(crcA, lengthB) ^ crcB;
}

/**
 * The CRC-64 of a `totalLength`-byte message after bytes [offset, offset + old.length) changed
 * from `old` to `next`, from the old CRC alone: the change is crc(old) ⊕ crc(next) (the affine
 * constants cancel) carried over the bytes after it. O(edit + log totalLength). Linear, so it
 * keeps whatever error the old CRC had: a damaged message stays detectably damaged.
 */
export function crc64Patch(oldCrc: bigint, totalLength: number, offset: number, old: Uint8Array, next: Uint8Array): bigint {
  if (old.length !== next.length) throw new RangeError(`crc64: patch needs old and new bytes of equal length, found ${old.length} and ${next.length}`);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + old.length > totalLength) throw new RangeError(`crc64: patch range [${offset}, ${offset + old.length}) is outside the message of ${totalLength} bytes`);
  return oldCrc ^ crc64Shift(crc64(old) ^ crc64(next), totalLength - offset - old.length);
}
