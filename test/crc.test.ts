import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32, crc32Combine, crc32Patch, crc32Shift, crc32Table, crc32Zeros } from '../src/crc/crc32.js';
import { crc64, crc64Combine, crc64Patch, crc64Shift } from '../src/crc/crc64.js';

const CHECK_INPUT = new TextEncoder().encode('123456789');
/** The published CRC-32 check value (crc of "123456789"). */
const CHECK_VALUE = 0xcbf43926;
const INVERT = 0xffffffff;
const MIB = 1024 * 1024;

const bytes = (maxLength: number) => fc.uint8Array({ maxLength });
const uint32 = fc.integer({ min: 0, max: INVERT });
/** Byte counts up to 2^bits, capped at the largest safe integer. */
const countUpTo = (bits: number) => fc.integer({ min: 0, max: Math.min(2 ** bits, Number.MAX_SAFE_INTEGER) });

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** One shared zero buffer; subarrays of it stand in for "n zero bytes". */
const ZERO_POOL = new Uint8Array(70_001);

describe('crc32 and crc32Table', () => {
  it('give the check value and 0 for no data', () => {
    expect(crc32(CHECK_INPUT)).toBe(CHECK_VALUE);
    expect(crc32Table(CHECK_INPUT)).toBe(CHECK_VALUE);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32Table(new Uint8Array(0))).toBe(0);
  });

  it('agree on random data with any previous value', () => {
    fc.assert(
      fc.property(bytes(3000), uint32, (data, previous) => {
        const native = crc32(data, previous);
        expect(crc32Table(data, previous)).toBe(native);
        expect(native).toBeGreaterThanOrEqual(0);
        expect(native).toBeLessThanOrEqual(INVERT);
      }),
      { numRuns: 300 },
    );
  });

  it('agree on unaligned views into a larger buffer', () => {
    fc.assert(
      fc.property(bytes(600), fc.nat(600), fc.nat(600), (data, startSeed, endSeed) => {
        const start = startSeed % (data.length + 1);
        const end = start + (endSeed % (data.length - start + 1));
        const view = data.subarray(start, end);
        expect(crc32Table(view)).toBe(crc32(view));
        expect(crc32(view)).toBe(crc32(data.slice(start, end)));
      }),
      { numRuns: 300 },
    );
  });

  it('continue incrementally across any split, mixing both paths', () => {
    fc.assert(
      fc.property(bytes(2000), fc.nat(), fc.nat(), (data, firstSeed, secondSeed) => {
        const first = firstSeed % (data.length + 1);
        const second = first + (secondSeed % (data.length - first + 1));
        const whole = crc32(data);
        const head = data.subarray(0, first);
        const middle = data.subarray(first, second);
        const rest = data.subarray(second);
        expect(crc32(rest, crc32(middle, crc32(head)))).toBe(whole);
        expect(crc32Table(rest, crc32Table(middle, crc32Table(head)))).toBe(whole);
        expect(crc32Table(rest, crc32(middle, crc32Table(head)))).toBe(whole);
      }),
      { numRuns: 300 },
    );
  });

  it('treat a signed previous value as its unsigned 32-bit form', () => {
    const previous = crc32(CHECK_INPUT);
    expect(crc32(CHECK_INPUT, previous | 0)).toBe(crc32(CHECK_INPUT, previous));
    expect(crc32Table(CHECK_INPUT, previous | 0)).toBe(crc32(CHECK_INPUT, previous));
  });
});

describe('crc32Combine', () => {
  it('equals the crc of the concatenation, including empty parts', () => {
    const part = fc.oneof(fc.constant(new Uint8Array(0)), bytes(2000));
    fc.assert(
      fc.property(part, part, (first, second) => {
        const combined = crc32Combine(crc32(first), crc32(second), second.length);
        expect(combined).toBe(crc32(concat(first, second)));
      }),
      { numRuns: 500 },
    );
  });

  it('folds many parts left to right', () => {
    fc.assert(
      fc.property(fc.array(bytes(300), { maxLength: 12 }), (parts) => {
        let running = 0;
        for (const part of parts) running = crc32Combine(running, crc32(part), part.length);
        expect(running).toBe(crc32(concat(...parts)));
      }),
      { numRuns: 200 },
    );
  });
});

describe('crc32Zeros', () => {
  it('matches an actual zero buffer for sampled sizes up to 70000', () => {
    const edges = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 255, 256, 257, 4095, 4096, 65535, 65536, 70_000];
    for (const size of edges) expect(crc32Zeros(size)).toBe(crc32(ZERO_POOL.subarray(0, size)));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), (size) => {
        expect(crc32Zeros(size)).toBe(crc32(ZERO_POOL.subarray(0, size)));
      }),
      { numRuns: 1000 },
    );
  });

  it('matches actual zero buffers of a few sizes up to 64 MiB', () => {
    const big = new Uint8Array(64 * MIB);
    for (const size of [MIB - 1, MIB, 5 * MIB + 3, 16 * MIB, 64 * MIB - 1, 64 * MIB]) {
      expect(crc32Zeros(size)).toBe(crc32(big.subarray(0, size)));
    }
  });

  it('is additive in the length: zeros(a + b) = combine(zeros(a), zeros(b), b)', () => {
    fc.assert(
      // The sum must stay a safe integer (2^52 + 2^52 is not): both below 2^52.
      fc.property(countUpTo(52).filter((n) => n < 2 ** 52), countUpTo(52).filter((n) => n < 2 ** 52), (first, second) => {
        expect(crc32Zeros(first + second)).toBe(crc32Combine(crc32Zeros(first), crc32Zeros(second), second));
      }),
      { numRuns: 500 },
    );
  });

  it('reaches 2^40 by doubling a real 1 MiB zero buffer twenty times', () => {
    let size = MIB;
    let crc = crc32(new Uint8Array(size));
    while (size < 2 ** 40) {
      crc = crc32Combine(crc, crc, size);
      size *= 2;
    }
    expect(size).toBe(2 ** 40);
    expect(crc32Zeros(2 ** 40)).toBe(crc);
    expect(crc32Combine(crc32Zeros(2 ** 39), crc32Zeros(2 ** 39), 2 ** 39)).toBe(crc32Zeros(2 ** 40));
  });
});

describe('crc32Shift', () => {
  it('is the register carried over real zero bytes', () => {
    fc.assert(
      fc.property(uint32, fc.integer({ min: 0, max: 70_000 }), (register, size) => {
        // crc32(zeros, previous) runs the register ~previous over the zeros and inverts it.
        const carried = (crc32(ZERO_POOL.subarray(0, size), (register ^ INVERT) >>> 0) ^ INVERT) >>> 0;
        expect(crc32Shift(register, size)).toBe(carried);
      }),
      { numRuns: 500 },
    );
  });

  it('composes: shift(shift(c, a), b) = shift(c, a + b) for lengths up to 2^40 and up to 2^53', () => {
    for (const bits of [40, 52]) {
      fc.assert(
        fc.property(uint32, countUpTo(bits), countUpTo(bits), (register, first, second) => {
          expect(crc32Shift(crc32Shift(register, first), second)).toBe(crc32Shift(register, first + second));
        }),
        { numRuns: 300 },
      );
    }
  });

  it('is linear in the register and the identity for length 0', () => {
    fc.assert(
      fc.property(uint32, uint32, countUpTo(53), (first, second, size) => {
        expect(crc32Shift(first, 0)).toBe(first);
        expect(crc32Shift((first ^ second) >>> 0, size)).toBe((crc32Shift(first, size) ^ crc32Shift(second, size)) >>> 0);
      }),
      { numRuns: 300 },
    );
  });

  it('combines with a 2^40-byte zero part the same way as two 2^39-byte parts', () => {
    fc.assert(
      fc.property(bytes(200), (head) => {
        const half = crc32Combine(crc32Combine(crc32(head), crc32Zeros(2 ** 39), 2 ** 39), crc32Zeros(2 ** 39), 2 ** 39);
        expect(crc32Combine(crc32(head), crc32Zeros(2 ** 40), 2 ** 40)).toBe(half);
      }),
      { numRuns: 50 },
    );
  });

  it('accepts Number.MAX_SAFE_INTEGER and rejects bad lengths', () => {
    const huge = Number.MAX_SAFE_INTEGER;
    expect(crc32Shift(crc32Shift(CHECK_VALUE, huge - 1), 1)).toBe(crc32Shift(CHECK_VALUE, huge));
    for (const bad of [-1, 0.5, Number.NaN, Infinity, 2 ** 53]) {
      expect(() => crc32Shift(1, bad)).toThrow(RangeError);
      expect(() => crc32Shift(1, bad)).toThrow(/^crc32: /);
    }
  });
});

describe('crc32Patch', () => {
  function applyEdit(message: Uint8Array, offset: number, newBytes: Uint8Array): Uint8Array {
    const edited = message.slice();
    edited.set(newBytes, offset);
    return edited;
  }

  function checkPatch(message: Uint8Array, offset: number, newBytes: Uint8Array): void {
    const oldBytes = message.slice(offset, offset + newBytes.length);
    const patched = crc32Patch(crc32(message), message.length, offset, oldBytes, newBytes);
    expect(patched).toBe(crc32(applyEdit(message, offset, newBytes)));
  }

  it('equals the crc of the edited message for random edits', () => {
    const edit = bytes(1500).chain((message) =>
      fc
        .integer({ min: 0, max: message.length })
        .chain((offset) =>
          fc.tuple(fc.constant(message), fc.constant(offset), fc.uint8Array({ maxLength: message.length - offset })),
        ),
    );
    fc.assert(
      fc.property(edit, ([message, offset, newBytes]) => checkPatch(message, offset, newBytes)),
      { numRuns: 500 },
    );
  });

  it('handles edits at the start, at the end, over the whole message and of length zero', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 800 }), fc.nat(), (message, lengthSeed) => {
        const editLength = 1 + (lengthSeed % message.length);
        const replacement = message.map((byte) => byte ^ 0x5a);
        checkPatch(message, 0, replacement.subarray(0, editLength));
        checkPatch(message, message.length - editLength, replacement.subarray(0, editLength));
        checkPatch(message, message.length - 1, replacement.subarray(0, 1));
        checkPatch(message, 0, replacement);
        for (const offset of [0, editLength - 1, message.length]) checkPatch(message, offset, new Uint8Array(0));
      }),
      { numRuns: 200 },
    );
    expect(crc32Patch(0, 0, 0, new Uint8Array(0), new Uint8Array(0))).toBe(0);
  });

  it('is unchanged when the new bytes equal the old ones', () => {
    const crc = crc32(CHECK_INPUT);
    expect(crc32Patch(crc, CHECK_INPUT.length, 2, CHECK_INPUT.subarray(2, 6), CHECK_INPUT.slice(2, 6))).toBe(crc);
  });

  it('patches a message known only by crc and length: X ‖ zeros(2^33) ‖ Y', () => {
    const zeroRun = 2 ** 33;
    const crcOfThreeParts = (head: Uint8Array, middleCrc: number, tail: Uint8Array) =>
      crc32Combine(crc32Combine(crc32(head), middleCrc, zeroRun), crc32(tail), tail.length);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        bytes(300),
        fc.nat(),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.nat(zeroRun - 65),
        (head, tail, offsetSeed, newBytes, zeroOffset) => {
          const total = head.length + zeroRun + tail.length;
          const original = crcOfThreeParts(head, crc32Zeros(zeroRun), tail);

          // An edit inside X: the expected crc comes from the modified X, never from 2^33 real bytes.
          const editLength = Math.min(newBytes.length, head.length);
          const offset = offsetSeed % (head.length - editLength + 1);
          const replacement = newBytes.subarray(0, editLength);
          const editedHead = applyEdit(head, offset, replacement);
          const insideHead = crc32Patch(original, total, offset, head.subarray(offset, offset + editLength), replacement);
          expect(insideHead).toBe(crcOfThreeParts(editedHead, crc32Zeros(zeroRun), tail));

          // An edit deep inside the zero run: zeros(z) ‖ new ‖ zeros(rest), again by combine.
          const rest = zeroRun - zeroOffset - newBytes.length;
          const editedRun = crc32Combine(crc32Combine(crc32Zeros(zeroOffset), crc32(newBytes), newBytes.length), crc32Zeros(rest), rest);
          const oldZeros = new Uint8Array(newBytes.length);
          const insideRun = crc32Patch(original, total, head.length + zeroOffset, oldZeros, newBytes);
          expect(insideRun).toBe(crcOfThreeParts(head, editedRun, tail));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('throws on mismatched lengths and out-of-range edits', () => {
    const four = new Uint8Array(4);
    const cases: Array<[number, number, Uint8Array, Uint8Array]> = [
      [10, 0, four, new Uint8Array(3)],
      [10, 7, four, four],
      [10, 11, new Uint8Array(0), new Uint8Array(0)],
      [3, 0, four, four],
      [10, -1, four, four],
      [10, 1.5, four, four],
      [-1, 0, new Uint8Array(0), new Uint8Array(0)],
      [2 ** 53, 0, four, four],
      [Number.NaN, 0, four, four],
    ];
    for (const [total, offset, oldBytes, newBytes] of cases) {
      expect(() => crc32Patch(0, total, offset, oldBytes, newBytes)).toThrow(RangeError);
      expect(() => crc32Patch(0, total, offset, oldBytes, newBytes)).toThrow(/^crc32: /);
    }
    expect(() => crc32Patch(0, 10, 6, four, four)).not.toThrow();
  });
});

describe('crc64Combine, crc64Shift and crc64Patch (CRC-64/XZ)', () => {
  it('the combine of two pieces is the CRC of the whole, for any pieces', () => {
    fc.assert(
      fc.property(bytes(600), bytes(600), (a, b) => crc64Combine(crc64(a), crc64(b), b.length) === crc64(concat(a, b))),
      { numRuns: 300 },
    );
  });

  it('shifting over n zero bytes is the register after n zeros, and shifts compose', () => {
    fc.assert(
      fc.property(bytes(64), fc.integer({ min: 0, max: 2000 }), (a, n) => crc64Combine(crc64(a), crc64(new Uint8Array(n)), n) === crc64(concat(a, new Uint8Array(n)))),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), countUpTo(40), countUpTo(40), (crc, m, n) => crc64Shift(crc64Shift(crc, m), n) === crc64Shift(crc, m + n)),
      { numRuns: 100 },
    );
  });

  it('a patch from the old CRC alone equals the CRC computed over the edited message', () => {
    fc.assert(
      fc.property(bytes(2000), bytes(100), fc.nat(), (message, edit, seed) => {
        fc.pre(message.length >= edit.length);
        const offset = seed % (message.length - edit.length + 1);
        const edited = message.slice();
        edited.set(edit, offset);
        return crc64Patch(crc64(message), message.length, offset, message.subarray(offset, offset + edit.length), edit) === crc64(edited);
      }),
      { numRuns: 300 },
    );
  });

  it('CRCs across a multi-MiB message combine from its pieces', () => {
    const whole = new Uint8Array(3 * MIB + 17).map((_, index) => (index * 2654435761) >>> 24);
    const cut = MIB + 5;
    expect(crc64Combine(crc64(whole.subarray(0, cut)), crc64(whole.subarray(cut)), whole.length - cut)).toBe(crc64(whole));
  });
});
