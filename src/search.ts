/**
 * Index of the last item whose `start` is at or before `offset`, in items sorted by `start`
 * (0 when none is): how every reader finds the block, segment or access point holding a byte.
 */
export function lastAtOrBefore<T>(items: readonly T[], start: (item: T) => number, offset: number): number {
  let low = 0;
  let high = items.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >>> 1;
    if (start(items[middle]!) <= offset) low = middle;
    else high = middle - 1;
  }
  return low;
}
