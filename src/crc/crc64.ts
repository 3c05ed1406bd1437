/**
 * CRC-64 as xz uses it (ECMA-182 polynomial, reflected: CRC-64/XZ), table-driven over two 32-bit
 * halves so that the inner loop stays in small integers; a BigInt only at the ends. Check value:
 * crc64("123456789") = 0x995dc9bbdf1939fa, pinned in test/crc.test.ts.
 */
const POLY_HIGH = 0xc96c5795;
const POLY_LOW = 0xd7870f42;
const MASK64 = (1n << 64n) - 1n;

const TABLE_LOW = new Uint32Array(256);
const TABLE_HIGH = new Uint32Array(256);
for (let byte = 0; byte < 256; byte++) {
  let low = byte;
  let high = 0;
  for (let bit = 0; bit < 8; bit++) {
    const carry = low & 1;
    low = ((low >>> 1) | ((high & 1) << 31)) >>> 0;
    high >>>= 1;
    if (carry) {
      low = (low ^ POLY_LOW) >>> 0;
      high = (high ^ POLY_HIGH) >>> 0;
    }
  }
  TABLE_LOW[byte] = low;
  TABLE_HIGH[byte] = high;
}

/** CRC-64/XZ of `data`, continuing from `previous` (the CRC of the bytes before it). */
export function crc64(data: Uint8Array, previous = 0n): bigint {
  const register = ~previous & MASK64;
  let low = Number(register & 0xffffffffn) >>> 0;
  let high = Number(register >> 32n) >>> 0;
  for (let index = 0; index < data.length; index++) {
    const slot = (low ^ data[index]!) & 0xff;
    low = (((low >>> 8) | (high << 24)) ^ TABLE_LOW[slot]!) >>> 0;
    high = ((high >>> 8) ^ TABLE_HIGH[slot]!) >>> 0;
  }
  return ~((BigInt(high) << 32n) | BigInt(low)) & MASK64;
}
