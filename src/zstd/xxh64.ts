/**
 * XXH64 (xxhash.com, the hash zstd frames and the seekable format check with), in 32-bit halves:
 * JavaScript numbers hold 53 bits, and BigInt is about 30× slower. Each 64-bit value is (hi, lo),
 * both unsigned 32-bit; results of the helpers come back through HI/LO to avoid allocating.
 * Pinned by test/zstd-format.test.ts against `xxhsum -H64` and against the checksums `zstd` writes.
 */
import { nativeZstd } from '../native/zstd.js';

let HI = 0;
let LO = 0;

const P1 = [0x9e3779b1, 0x85ebca87] as const;
const P2 = [0xc2b2ae3d, 0x27d4eb4f] as const;
const P3 = [0x165667b1, 0x9e3779f9] as const;
const P4 = [0x85ebca77, 0xc2b2ae63] as const;
const P5 = [0x27d4eb2f, 0x165667c5] as const;

/** (ah, al) × (bh, bl) mod 2^64. */
function mul(ah: number, al: number, bh: number, bl: number): void {
  // al × bl needs all 64 bits: in 16-bit pieces every partial product is exact in a double.
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33
  const low = a0 * b0 + (mid % 65536) * 65536; // < 2^33
  const carry = Math.floor(low / 4294967296);
  LO = low >>> 0;
  HI = (a1 * b1 + Math.floor(mid / 65536) + carry + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0;
}

function add(ah: number, al: number, bh: number, bl: number): void {
  const low = al + bl;
  LO = low >>> 0;
  HI = (ah + bh + (low > 0xffffffff ? 1 : 0)) >>> 0;
}

/** Rotates (h, l) left by r, 0 < r < 32. */
function rotl(h: number, l: number, r: number): void {
  HI = ((h << r) | (l >>> (32 - r))) >>> 0;
  LO = ((l << r) | (h >>> (32 - r))) >>> 0;
}

/** round(acc, input) = rotl(acc + input × P2, 31) × P1. */
function round(ah: number, al: number, ih: number, il: number): void {
  mul(ih, il, P2[0], P2[1]);
  add(ah, al, HI, LO);
  rotl(HI, LO, 31);
  mul(HI, LO, P1[0], P1[1]);
}

/** The full 64-bit XXH64 of `data` (seed 0), as a bigint. */
export function xxh64(data: Uint8Array): bigint {
  const [hi, lo] = xxh64Halves(data);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * What zstd stores: the low 32 bits of XXH64 (Content_Checksum, the seek table's Checksum).
 * Through the seekz_zstd addon when it is built (native/zstd/xxh64.c: ~50× faster, which an
 * in-place edit of a 1 MiB stored frame needs), else in JavaScript.
 */
export function xxh64Low32(data: Uint8Array): number {
  const native = nativeZstd();
  return native ? native.xxh64Low32(data) : xxh64Halves(data)[1];
}

/** The JavaScript path alone (tests hold the addon against it). */
export function xxh64Low32Js(data: Uint8Array): number {
  return xxh64Halves(data)[1];
}

function xxh64Halves(data: Uint8Array): [number, number] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const length = data.length;
  let at = 0;
  let h: number;
  let l: number;
  if (length >= 32) {
    add(P1[0], P1[1], P2[0], P2[1]);
    let v1h = HI, v1l = LO;
    let v2h: number = P2[0], v2l: number = P2[1];
    let v3h = 0, v3l = 0;
    // seed − P1 = 2^64 − P1
    add(~P1[0] >>> 0, ~P1[1] >>> 0, 0, 1);
    let v4h = HI, v4l = LO;
    for (; at + 32 <= length; at += 32) {
      round(v1h, v1l, view.getUint32(at + 4, true), view.getUint32(at, true));
      v1h = HI; v1l = LO;
      round(v2h, v2l, view.getUint32(at + 12, true), view.getUint32(at + 8, true));
      v2h = HI; v2l = LO;
      round(v3h, v3l, view.getUint32(at + 20, true), view.getUint32(at + 16, true));
      v3h = HI; v3l = LO;
      round(v4h, v4l, view.getUint32(at + 28, true), view.getUint32(at + 24, true));
      v4h = HI; v4l = LO;
    }
    rotl(v1h, v1l, 1);
    let sh = HI, sl = LO;
    rotl(v2h, v2l, 7);
    add(sh, sl, HI, LO);
    sh = HI; sl = LO;
    rotl(v3h, v3l, 12);
    add(sh, sl, HI, LO);
    sh = HI; sl = LO;
    rotl(v4h, v4l, 18);
    add(sh, sl, HI, LO);
    h = HI; l = LO;
    for (const [vh, vl] of [[v1h, v1l], [v2h, v2l], [v3h, v3l], [v4h, v4l]] as const) {
      // mergeRound(acc, v) = (acc ^ round(0, v)) × P1 + P4
      round(0, 0, vh, vl);
      mul((h ^ HI) >>> 0, (l ^ LO) >>> 0, P1[0], P1[1]);
      add(HI, LO, P4[0], P4[1]);
      h = HI; l = LO;
    }
  } else {
    h = P5[0];
    l = P5[1];
  }
  add(h, l, Math.floor(length / 4294967296), length >>> 0);
  h = HI; l = LO;
  for (; at + 8 <= length; at += 8) {
    round(0, 0, view.getUint32(at + 4, true), view.getUint32(at, true));
    rotl((h ^ HI) >>> 0, (l ^ LO) >>> 0, 27);
    mul(HI, LO, P1[0], P1[1]);
    add(HI, LO, P4[0], P4[1]);
    h = HI; l = LO;
  }
  if (at + 4 <= length) {
    mul(0, view.getUint32(at, true), P1[0], P1[1]);
    rotl((h ^ HI) >>> 0, (l ^ LO) >>> 0, 23);
    mul(HI, LO, P2[0], P2[1]);
    add(HI, LO, P3[0], P3[1]);
    h = HI; l = LO;
    at += 4;
  }
  for (; at < length; at++) {
    mul(0, data[at]!, P5[0], P5[1]);
    rotl((h ^ HI) >>> 0, (l ^ LO) >>> 0, 11);
    mul(HI, LO, P1[0], P1[1]);
    h = HI; l = LO;
  }
  // avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
  l = (l ^ (h >>> 1)) >>> 0;
  mul(h, l, P2[0], P2[1]);
  l = (LO ^ ((LO >>> 29) | (HI << 3))) >>> 0;
  h = (HI ^ (HI >>> 29)) >>> 0;
  mul(h, l, P3[0], P3[1]);
  return [HI, (LO ^ HI) >>> 0];
}
