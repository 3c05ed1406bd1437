/**
 * CRC-32 as used by gzip and zlib: reflected polynomial 0xEDB88320, register preset to
 * 0xFFFFFFFF and inverted at the end. Every result is an unsigned 32-bit number.
 *
 * Besides the plain checksum this module does CRC arithmetic, so that a gzip trailer can be
 * updated without reading the whole member:
 *  - a CRC register is a polynomial over GF(2) of degree < 32; in the reflected layout bit 31
 *    (0x80000000) holds the coefficient of x^0 and bit 0 the coefficient of x^31;
 *  - feeding one zero byte multiplies the register by x^8 mod P, so feeding n zero bytes
 *    multiplies it by x^(8n) mod P, which repeated squaring gives in O(log n) steps;
 *  - the CRC is affine in the message: crc(M ^ D) = crc(M) ^ crc(D) ^ crc(zeros(len M)),
 *    which lets an edit be applied as a correction term computed from the edited bytes alone.
 */
import * as zlib from 'node:zlib';

/** The CRC-32 generator polynomial P, bit-reflected (x^0 in the top bit). */
const REFLECTED_POLYNOMIAL = 0xedb88320;
/** Register preset and final xor of gzip's CRC-32. */
const REGISTER_INVERT = 0xffffffff;
/** The polynomial x (x^1) in the reflected layout: x^(2^0). */
const POLYNOMIAL_X = 0x40000000;
/** Byte-table size and the number of tables used by slicing-by-8. */
const TABLE_SIZE = 256;
const SLICE_COUNT = 8;
/** Splitting a length into two 32-bit words keeps every bit operation exact up to 2^53. */
const WORD_SPAN = 0x1_0000_0000;
const WORD_BITS = 32;
/** A byte is 2^3 bits, so bit i of a byte count weighs x^(2^(i+3)). */
const BITS_PER_BYTE_LOG2 = 3;
/** Highest cached power index: x^(2^63) covers any byte count below 2^60. */
const MAX_POWER_INDEX = 63;

type NativeCrc32 = (data: Uint8Array, value?: number) => number;

// zlib.crc32 arrived in Node 20.15 / 22.2; the namespace simply lacks it on older releases.
const nativeCrc32: NativeCrc32 | undefined =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? (zlib.crc32 as NativeCrc32) : undefined;

/**
 * CRC-32 of `data`, continuing from the CRC `previous` of the bytes before it, so that
 * `crc32(b, crc32(a)) === crc32(a‖b)`. Uses zlib's native code when Node has it.
 */
export function crc32(data: Uint8Array, previous = 0): number {
  // An empty array may have no data pointer, and zlib's crc32 answers 0 for a null buffer.
  if (data.length === 0) return previous >>> 0;
  if (nativeCrc32 !== undefined) return nativeCrc32(data, previous >>> 0) >>> 0;
  return crc32Table(data, previous);
}

let sliceTables: Uint32Array[] | undefined;

/**
 * Slicing-by-8 tables: slice 0 is the classic byte table (register times x^8, reduced);
 * slice k advances a byte that sits k bytes further back, so eight bytes fold in one step.
 */
function getSliceTables(): Uint32Array[] {
  if (sliceTables !== undefined) return sliceTables;
  const tables = Array.from({ length: SLICE_COUNT }, () => new Uint32Array(TABLE_SIZE));
  const first = tables[0];
  for (let byte = 0; byte < TABLE_SIZE; byte++) {
    let register = byte;
    for (let bit = 0; bit < 8; bit++) {
      register = register & 1 ? (register >>> 1) ^ REFLECTED_POLYNOMIAL : register >>> 1;
    }
    first[byte] = register;
  }
  for (let slice = 1; slice < SLICE_COUNT; slice++) {
    const before = tables[slice - 1];
    const table = tables[slice];
    for (let byte = 0; byte < TABLE_SIZE; byte++) {
      table[byte] = (before[byte] >>> 8) ^ first[before[byte] & 0xff];
    }
  }
  sliceTables = tables;
  return tables;
}

/**
 * Pure-JS CRC-32 (slicing-by-8), the fallback for Node without `zlib.crc32`. Exported so tests
 * can hold it against the native path; same contract as {@link crc32}.
 */
export function crc32Table(data: Uint8Array, previous = 0): number {
  const [slice0, slice1, slice2, slice3, slice4, slice5, slice6, slice7] = getSliceTables();
  let register = (previous ^ REGISTER_INVERT) >>> 0;
  const end = data.length;
  const blockEnd = end - (end % SLICE_COUNT);
  let index = 0;
  while (index < blockEnd) {
    const low =
      register ^ (data[index] | (data[index + 1] << 8) | (data[index + 2] << 16) | (data[index + 3] << 24));
    const high = data[index + 4] | (data[index + 5] << 8) | (data[index + 6] << 16) | (data[index + 7] << 24);
    register =
      slice7[low & 0xff] ^
      slice6[(low >>> 8) & 0xff] ^
      slice5[(low >>> 16) & 0xff] ^
      slice4[low >>> 24] ^
      slice3[high & 0xff] ^
      slice2[(high >>> 8) & 0xff] ^
      slice1[(high >>> 16) & 0xff] ^
      slice0[high >>> 24];
    index += SLICE_COUNT;
  }
  while (index < end) {
    register = slice0[(register ^ data[index]) & 0xff] ^ (register >>> 8);
    index++;
  }
  return (register ^ REGISTER_INVERT) >>> 0;
}

/** (multiplier · multiplicand) mod P, both in the reflected layout (zlib's multmodp). */
function multiplyModP(multiplier: number, multiplicand: number): number {
  let product = 0;
  // `term` is multiplicand · x^i mod P while `bits` has the multiplier's x^i coefficient on top.
  // Masks instead of branches: random coefficients defeat branch prediction (~3.5x slower).
  let term = multiplicand | 0;
  for (let bits = multiplier | 0; bits !== 0; bits <<= 1) {
    product ^= term & (bits >> 31);
    term = (term >>> 1) ^ (REFLECTED_POLYNOMIAL & -(term & 1));
  }
  return product >>> 0;
}

let powers: Uint32Array | undefined;

/**
 * powers[k] = x^(2^k) mod P for k = 0..63, each the square of the one before. Built on first use
 * (63 squarings); a safe-integer byte count needs at most k = 3 + 52.
 */
function getPowers(): Uint32Array {
  if (powers !== undefined) return powers;
  const table = new Uint32Array(MAX_POWER_INDEX + 1);
  table[0] = POLYNOMIAL_X;
  for (let index = 1; index <= MAX_POWER_INDEX; index++) {
    table[index] = multiplyModP(table[index - 1], table[index - 1]);
  }
  powers = table;
  return table;
}

function checkCount(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`crc32: ${name} must be a non-negative safe integer, found ${value}`);
  }
}

/** Multiplies `register` by x^(2^(firstIndex + i)) for every set bit i of the 32-bit `word`. */
function shiftByWord(register: number, word: number, firstIndex: number): number {
  const table = getPowers();
  let index = firstIndex;
  for (let bits = word >>> 0; bits !== 0; bits >>>= 1, index++) {
    if (bits & 1) register = multiplyModP(table[index], register);
  }
  return register;
}

/**
 * Advances a CRC register over `length` zero bytes: returns crc · x^(8·length) mod P, which is
 * what makes `crc32Combine(a, b, length) === crc32Shift(a, length) ^ b`. O(log length).
 */
export function crc32Shift(crc: number, length: number): number {
  checkCount('length', length);
  const low = length % WORD_SPAN;
  const high = (length - low) / WORD_SPAN;
  let register = shiftByWord(crc >>> 0, low, BITS_PER_BYTE_LOG2);
  if (high !== 0) register = shiftByWord(register, high, BITS_PER_BYTE_LOG2 + WORD_BITS);
  return register;
}

/**
 * CRC-32 of A‖B from crc(A), crc(B) and len(B). The preset/xorout constants cancel between the
 * two terms, leaving crc(A) carried over len(B) zero bytes xor crc(B).
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (crc32Shift(crcA, lengthB) ^ crcB) >>> 0;
}

/**
 * CRC-32 of `length` zero bytes in O(log length): the preset register carried over the zeros,
 * then the final inversion.
 */
export function crc32Zeros(length: number): number {
  return (crc32Shift(REGISTER_INVERT, length) ^ REGISTER_INVERT) >>> 0;
}

/**
 * The CRC-32 of a `totalLength`-byte message after bytes [offset, offset + oldBytes.length)
 * changed from `oldBytes` to `newBytes`, given only the old CRC. The edit's effect is the linear
 * part L of the CRC applied to Δ = old ^ new, carried over the bytes after the edit; leading bytes
 * add nothing because L of zeros is zero. L(Δ) = crc(old) ^ crc(new), since the affine constant
 * appears in both and cancels (the same as crc(Δ) ^ crc(zeros(len)), without building Δ).
 * Cost: O(edit length + log totalLength); bytes outside the edit are never needed.
 */
export function crc32Patch(
  oldCrc: number,
  totalLength: number,
  offset: number,
  oldBytes: Uint8Array,
  newBytes: Uint8Array,
): number {
  if (oldBytes.length !== newBytes.length) {
    throw new RangeError(
      `crc32: patch needs old and new bytes of equal length, found ${oldBytes.length} and ${newBytes.length}`,
    );
  }
  checkCount('total length', totalLength);
  checkCount('offset', offset);
  const editLength = oldBytes.length;
  if (offset > totalLength || editLength > totalLength - offset) {
    throw new RangeError(
      `crc32: patch range [${offset}, ${offset + editLength}) is outside the message of ${totalLength} bytes`,
    );
  }
  const linearDelta = crc32(oldBytes) ^ crc32(newBytes);
  const tail = totalLength - offset - editLength;
  return (oldCrc ^ crc32Shift(linearDelta >>> 0, tail)) >>> 0;
}
