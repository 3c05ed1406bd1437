import { describe, expect, it } from 'vitest';
import { orderedWindow } from '../src/workers/ordered.js';

/** A promise and the hands that settle it. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((yes, no) => ((resolve = yes), (reject = no)));
  return { promise, resolve, reject };
}

describe('orderedWindow', () => {
  for (const eager of [false, true]) {
    it(`consumes in push order whatever order results settle in, one at a time (eager: ${eager})`, async () => {
      const consumed: number[] = [];
      let running = 0;
      const window = orderedWindow<number>(3, async (value) => {
        expect(++running).toBe(1);
        await new Promise((resolve) => setImmediate(resolve));
        consumed.push(value);
        running--;
      }, { eager });
      // Later results settle first.
      for (let index = 0; index < 8; index++) await window.push(new Promise((resolve) => setTimeout(() => resolve(index), 3 * (8 - index))));
      await window.drain();
      expect(consumed).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    });
  }

  it('eager: a result is consumed once it and those before it are done, before the window fills', async () => {
    const consumed: number[] = [];
    const window = orderedWindow<number>(4, async (value) => void consumed.push(value), { eager: true });
    const first = deferred<number>();
    await window.push(first.promise);
    await window.push(Promise.resolve(1));
    expect(consumed).toEqual([]);
    first.resolve(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(consumed).toEqual([0, 1]);
  });

  it('eager: push waits while `limit` results are unconsumed', async () => {
    const window = orderedWindow<number>(2, async () => {}, { eager: true });
    const first = deferred<number>();
    await window.push(first.promise);
    let pushed = false;
    const second = window.push(Promise.resolve(1)).then(() => (pushed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(pushed).toBe(false);
    first.resolve(0);
    await second;
    expect(pushed).toBe(true);
  });

  it('eager: the first failure (of a result or of consume) is what push and drain reject with', async () => {
    const window = orderedWindow<number>(2, async (value) => {
      if (value === 1) throw new Error('write failed');
    }, { eager: true });
    await window.push(Promise.resolve(0));
    await window.push(Promise.resolve(1));
    await expect(window.push(Promise.resolve(2))).rejects.toThrow('write failed');
    await expect(window.drain()).rejects.toThrow('write failed');
    const failing = orderedWindow<number>(2, async () => {}, { eager: true });
    await failing.push(Promise.reject(new Error('job failed')));
    await expect(failing.drain()).rejects.toThrow('job failed');
  });
});
