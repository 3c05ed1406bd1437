/**
 * Mutations: what a case does to a good file. Random damage (bit flips, overwrites, truncation,
 * insertion, deletion, appended junk) lands anywhere, with extra weight on the first and last
 * bytes where headers, maps, indexes and trailers live. Forgeries (forge.ts, zstd-forge.ts) change
 * one field and repair its checksum (zstd's headers and seek table have none to repair). Every mutation has a short name for the table and the repro line.
 */
import { forgeSeekzIndex, gzipForgeries, xzForgeries, type Forgery } from './forge.js';
import type { Random } from './random.js';
import { zstdForgeries } from './zstd-forge.js';

export interface Mutation {
  name: string;
  bytes: Uint8Array;
}

/** A position biased towards the head and the tail of the file. */
function position(length: number, random: Random): number {
  if (length === 0) return 0;
  const roll = random.int(10);
  if (roll < 3) return random.int(Math.min(length, 96));
  if (roll < 5) return Math.max(0, length - 1 - random.int(Math.min(length, 48)));
  return random.int(length);
}

const join = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

export const randomMutations: Record<string, (file: Uint8Array, random: Random) => Uint8Array> = {
  'bit-flip': (file, random) => {
    const out = file.slice();
    for (let flips = random.between(1, 3); flips > 0; flips--) out[position(out.length, random)] ^= 1 << random.int(8);
    return out;
  },
  overwrite: (file, random) => {
    const out = file.slice();
    const at = position(out.length, random);
    const length = Math.min(out.length - at, random.between(1, 16));
    out.set(random.pick([() => random.bytes(length), () => new Uint8Array(length), () => new Uint8Array(length).fill(0xff)])(), at);
    return out;
  },
  truncate: (file, random) => file.slice(0, position(file.length, random)),
  insert: (file, random) => {
    const at = position(file.length, random);
    const extra = random.chance(0.5) ? random.bytes(random.between(1, 64)) : new Uint8Array(random.between(1, 64));
    return join(file.subarray(0, at), extra, file.subarray(at));
  },
  delete: (file, random) => {
    const at = position(file.length, random);
    return join(file.subarray(0, at), file.subarray(Math.min(file.length, at + random.between(1, 64))));
  },
  /** NUL padding or junk after the end, as after a member or a stream. */
  append: (file, random) => join(file, random.pick([new Uint8Array(random.between(1, 4) * 4), random.bytes(random.between(1, 40)), Uint8Array.of(0x1f, 0x8b, 8)])),
};

function applyForgery(forgeries: Record<string, Forgery>, file: Uint8Array, random: Random, members: number[]): Mutation | undefined {
  const names = Object.keys(forgeries);
  // Some forgeries do not apply to every file; try a few before falling back to random damage.
  for (let attempt = 0; attempt < 4; attempt++) {
    const name = random.pick(names);
    const bytes = forgeries[name]!(file, random, members);
    if (bytes) return { name, bytes };
  }
  return undefined;
}

function randomDamage(file: Uint8Array, random: Random): Mutation {
  const name = random.weighted({ 'bit-flip': 4, overwrite: 3, truncate: 2, insert: 1, delete: 1, append: 1 });
  return { name, bytes: randomMutations[name]!(file, random) };
}

/** Damage for a compressed file: random damage, or a forged field of its format. */
export function mutateCompressed(file: Uint8Array, format: 'gz' | 'xz' | 'zst', random: Random, members: number[]): Mutation {
  if (random.chance(0.35)) {
    const forged = applyForgery(format === 'gz' ? gzipForgeries : format === 'xz' ? xzForgeries : zstdForgeries, file, random, members);
    if (forged) return forged;
  }
  return randomDamage(file, random);
}

/** Damage for a sidecar index: random damage, or (seekz format) an edit with its CRC-32 recomputed. */
export function mutateIndex(index: Uint8Array, random: Random): Mutation {
  if (random.chance(0.4)) {
    const bytes = forgeSeekzIndex(index, random);
    if (bytes) return { name: 'idx-forged-crc', bytes };
  }
  return randomDamage(index, random);
}
