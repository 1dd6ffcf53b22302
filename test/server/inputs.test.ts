/** Request JSON → feeds (services/inputs.ts): integer inputs take exactly the integers their type holds. */
import { describe, expect, it } from 'vitest';

import type { Tensor } from '../../src/onnx/index.js';
import { decodeFeeds, encodeFeeds, parseInputs } from '../../src/server/services/inputs.js';

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

describe('small integer inputs', () => {
  it('int8 and uint8: in range as typed arrays of their type, out of range refused', () => {
    expect(parseInputs(model('int8'), [[-128, 0, 127]]).feeds.ids!.data).toEqual(Int8Array.from([-128, 0, 127]));
    expect(parseInputs(model('uint8'), [[0, 7, 255]]).feeds.ids!.data).toEqual(Uint8Array.from([0, 7, 255]));
    expect(() => parseInputs(model('int8'), [[0, 128, 1]])).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', details: { input: 'ids', index: 1 } }));
    expect(() => parseInputs(model('uint8'), [[0, 1, -1]])).toThrow(expect.objectContaining({ code: 'INVALID_INPUT', details: { input: 'ids', index: 2 } }));
  });
});

describe('the observation log form of feeds (encodeFeeds, decodeFeeds)', () => {
  it('gives back every element type byte for byte, signed int8 included', () => {
    const feeds: Record<string, Tensor> = {
      f32: { data: Float32Array.from([0.1, -2]), dims: [1, 2] },
      f64: { data: Float64Array.from([1e-300, 3]), dims: [2] },
      i32: { data: Int32Array.from([-(2 ** 31), 7]), dims: [2] },
      i64: { data: BigInt64Array.from([-(2n ** 60n), 9n]), dims: [2] },
      i8: { data: Int8Array.from([-128, 127, -1]), dims: [3] },
      u8: { data: Uint8Array.from([0, 255]), dims: [2] },
      flag: { data: Uint8Array.from([1, 0]), dims: [2], type: 'bool' as const },
    };
    const back = decodeFeeds(JSON.parse(JSON.stringify(encodeFeeds(feeds))));
    for (const [name, t] of Object.entries(feeds)) {
      expect(back[name]!.data.constructor, name).toBe(t.data.constructor);
      expect(Array.from(back[name]!.data as ArrayLike<unknown>), name).toEqual(Array.from(t.data as ArrayLike<unknown>));
      expect(back[name]!.dims).toEqual(t.dims);
      expect(back[name]!.type).toBe(t.type);
    }
  });
});
