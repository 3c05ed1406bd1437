/**
 * Seeded randomness for the fuzz campaign. Every case draws from its own generator, made from the
 * run's seed and the case number only, so `--seed S --case K` replays case K exactly, whatever
 * ran before it and however many workers ran at once.
 */
export interface Random {
  /** A whole number in [0, n). */
  int(n: number): number;
  /** A whole number in [min, max]. */
  between(min: number, max: number): number;
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** Picks a key with probability proportional to its weight. */
  weighted<K extends string>(weights: Partial<Record<K, number>>): K;
  bytes(length: number): Uint8Array;
}

/** splitmix32: small, fast, and good enough to spread seeds that differ by one. */
export function createRandom(seed: number, stream = 0): Random {
  let state = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b)) >>> 0;
  const next = () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  const int = (n: number) => (n <= 1 ? 0 : Math.floor((next() / 2 ** 32) * n));
  return {
    int,
    between: (min, max) => min + int(max - min + 1),
    chance: (p) => next() / 2 ** 32 < p,
    pick: (items) => items[int(items.length)]!,
    weighted(weights) {
      const entries = Object.entries(weights).filter(([, weight]) => (weight as number) > 0) as [never, number][];
      let roll = (next() / 2 ** 32) * entries.reduce((sum, [, weight]) => sum + weight, 0);
      for (const [key, weight] of entries) if ((roll -= weight) < 0) return key;
      return entries[entries.length - 1]![0];
    },
    bytes(length) {
      const out = new Uint8Array(length);
      for (let index = 0; index < length; index++) out[index] = next() & 0xff;
      return out;
    },
  };
}

/**
 * Bytes that look like a disk image: runs of text, zeros and incompressible noise, so every
 * deflate block type and every xz chunk kind shows up in a few hundred KiB.
 */
export function diskLikeContent(length: number, random: Random): Uint8Array {
  const out = new Uint8Array(length);
  const words = ['root', 'boot', 'kernel', 'initrd', 'console=ttyS0 ', 'UUID=', 'ext4 ', '/usr/lib/', '\n', ' ', 'options '];
  for (let at = 0; at < length; ) {
    const run = Math.min(length - at, random.between(256, 24 * 1024));
    const kind = random.int(3);
    if (kind === 1) out.set(random.bytes(run), at);
    if (kind === 2) {
      for (let index = 0; index < run; ) {
        const word = random.pick(words);
        for (let char = 0; char < word.length && index < run; char++, index++) out[at + index] = word.charCodeAt(char);
      }
    }
    at += run; // kind 0 stays zero
  }
  return out;
}
