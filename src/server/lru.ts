/**
 * Insertion-ordered Maps used as least-recently-used caches (adapter states, engines, refusals): the
 * first key is the least recently used, `touch` moves a key to the end, `evictPast` drops from the
 * front.
 */

/** Make `key` the most recently used entry of `map`, holding `value`; returns `value`. */
export function touch<K, V>(map: Map<K, V>, key: K, value: V): V {
  map.delete(key);
  map.set(key, value);
  return value;
}

/** Drop the least recently used entries until `map` has at most `max`, never `keep`; `onEvict` sees each. */
export function evictPast<K, V>(map: Map<K, V>, max: number, keep?: K, onEvict?: (key: K, value: V) => void): void {
  for (const [k, v] of map) {
    if (map.size <= max) break;
    if (k === keep) continue;
    map.delete(k);
    onEvict?.(k, v);
  }
}
