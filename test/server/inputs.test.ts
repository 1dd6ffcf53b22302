/** Request JSON → feeds (services/inputs.ts): integer inputs take exactly the integers their type holds. */
import { describe, expect, it } from 'vitest';

import { parseInputs } from '../../src/server/services/inputs.js';

const model = (dtype: string) => ({ inputs: [{ name: 'ids', dtype, shape: ['batch', 3] }] });

describe('integer inputs', () => {
  it('int32: values in range as they are; ±2³¹ and beyond are refused, not wrapped', () => {
    const ok = parseInputs(model('int32'), [[0, -(2 ** 31), 2 ** 31 - 1]]);
    expect(Array.from(ok.feeds.ids!.data as Int32Array)).toEqual([0, -(2 ** 31), 2 ** 31 - 1]);
    for (const bad of [2 ** 31, -(2 ** 31) - 1, 3e9]) {
      expect(() => parseInputs(model('int32'), [[1, bad, 2]])).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', details: { input: 'ids', index: 1 }, message: expect.stringContaining('outside') }));
    }
  });

  it('int64: safe integers exactly; a fraction or an unsafe integer is refused', () => {
    const ok = parseInputs(model('int64'), [[1, 2 ** 40, -(2 ** 53) + 1]]);
    expect(Array.from(ok.feeds.ids!.data as BigInt64Array)).toEqual([1n, 2n ** 40n, -(2n ** 53n) + 1n]);
    expect(() => parseInputs(model('int64'), [[1, 2.5, 3]])).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('not an integer') }));
    expect(() => parseInputs(model('int64'), [[1, 2 ** 53, 3]])).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining('outside') }));
  });
});
