/**
 * Timing in turns for the bench scripts (grad-throughput, heap-check, layout-ab): each function first
 * runs `warmupMs` (and at least 3 calls) untimed, then they take turns in `rounds` windows of
 * `windowMs` each, so that a ratio of two of them can be taken per round, inside one of this VM's
 * fast or slow phases.
 */
export const median = (a: readonly number[]): number => a.slice().sort((x, y) => x - y)[a.length >> 1]!;

/** µs per call of each function, one value per round. */
export async function timeInTurns(fns: readonly (() => Promise<unknown>)[], rounds = 15, windowMs = 67, warmupMs = 1000): Promise<number[][]> {
  for (const f of fns) for (let i = 0, t = performance.now(); i < 3 || performance.now() - t < warmupMs; i++) await f();
  const us: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < fns.length; k++) {
      let calls = 0;
      const t = performance.now();
      do {
        await fns[k]!();
        calls++;
      } while (performance.now() - t < windowMs);
      us[k]!.push(((performance.now() - t) * 1000) / calls);
    }
  }
  return us;
}

/** Median over rounds of the per-round ratio us[k] / us[0]. */
export const ratioToFirst = (us: readonly number[][], k: number): number => median(us[0]!.map((f, r) => us[k]![r]! / f));
