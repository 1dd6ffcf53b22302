import { describe, expect, it } from 'vitest';
import {
  createOptimizer,
  deserializeState,
  Rng,
  serializeState,
  STATE_FORMAT,
  type SerializedState,
} from '../../src/kalman/index.js';
import { CONFIGS, expectKalmanError, fullBatch, LAYOUT, rawBytes, snapshot, TestRandom } from './helpers.js';

/** Simulates a safetensors `__metadata__` round trip: every meta value becomes a string. */
function stringifyMeta(s: SerializedState): SerializedState {
  return { tensors: s.tensors, meta: Object.fromEntries(Object.entries(s.meta).map(([k, v]) => [k, String(v)])) };
}

describe('serialize → deserialize', () => {
  for (const cfg of CONFIGS) {
    it(`${JSON.stringify(cfg)}: round-trips bit for bit and continues identically`, () => {
      const rnd = new TestRandom(41);
      const opt = createOptimizer(cfg);
      let state = opt.init(LAYOUT, rnd.f32(LAYOUT.n, 0.1), 1234);
      for (let k = 0; k < 3; k++) state = opt.step(state, fullBatch(rnd, 2)).state;
      const ser = opt.serialize(state);
      expect(ser.meta['format']).toBe(STATE_FORMAT);
      for (const t of Object.values(ser.tensors)) {
        expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      }
      const back = opt.deserialize(ser);
      expect(rawBytes(back)).toBe(rawBytes(state));
      expect(snapshot(back)).toEqual(snapshot(state));
      const fromStrings = deserializeState(stringifyMeta(serializeState(state)));
      expect(rawBytes(fromStrings)).toBe(rawBytes(state));
      // The serialized tensors are copies: mutating them does not touch the state.
      ser.tensors['theta']!.data[0] = 12345;
      expect(state.theta[0]).not.toBe(12345);
      // Both continue identically, step after step.
      let a = state;
      let b = back;
      for (let k = 0; k < 3; k++) {
        const batch = fullBatch(rnd, 2);
        const ra = opt.step(a, batch);
        const rb = opt.step(b, batch);
        expect(rawBytes(rb.state)).toBe(rawBytes(ra.state));
        a = ra.state;
        b = rb.state;
      }
      expect(new Rng(b.rng).nextUint32()).toBe(new Rng(a.rng).nextUint32());
    });
  }

  it('is deterministic for a seed and differs across seeds', () => {
    const opt = createOptimizer({ type: 'loko' });
    const theta = new Float64Array(LAYOUT.n);
    expect(rawBytes(opt.init(LAYOUT, theta, 7))).toBe(rawBytes(opt.init(LAYOUT, theta, 7)));
    expect(rawBytes(opt.init(LAYOUT, theta, 8))).not.toBe(rawBytes(opt.init(LAYOUT, theta, 7)));
  });

  it('rejects a state of another format, type or shape with OPTIMIZER_STATE', () => {
    const opt = createOptimizer({ type: 'adamw' });
    const good = opt.serialize(opt.init(LAYOUT, new Float64Array(LAYOUT.n), 1));
    expectKalmanError(() => deserializeState({ ...good, meta: { ...good.meta, format: 'other' } }), 'OPTIMIZER_STATE');
    expectKalmanError(() => deserializeState({ ...good, meta: { ...good.meta, type: 'sgd' } }), 'OPTIMIZER_STATE');
    expectKalmanError(() => deserializeState({ ...good, meta: { ...good.meta, step: -1 } }), 'OPTIMIZER_STATE');
    expectKalmanError(() => deserializeState({ ...good, meta: { ...good.meta, config: '{"type":"adamw","lr":99}' } }), 'OPTIMIZER_STATE');
    expectKalmanError(() => deserializeState({ ...good, meta: { ...good.meta, layout: '{' } }), 'OPTIMIZER_STATE');
    const { exp_avg: _dropped, ...missing } = good.tensors;
    expectKalmanError(() => deserializeState({ ...good, tensors: missing }), 'OPTIMIZER_STATE');
    const err = expectKalmanError(
      () => deserializeState({ ...good, tensors: { ...good.tensors, exp_avg: { dtype: 'float64', shape: [3], data: new Float64Array(3) } } }),
      'OPTIMIZER_STATE',
    );
    expect(err.details?.['field']).toBe('exp_avg');
    const nan = new Float64Array(LAYOUT.n);
    nan[3] = NaN;
    expectKalmanError(() => deserializeState({ ...good, tensors: { ...good.tensors, theta: { dtype: 'float64', shape: [LAYOUT.n], data: nan } } }), 'OPTIMIZER_STATE');
    // A state of another config is refused by an optimizer that did not make it.
    expectKalmanError(() => createOptimizer({ type: 'adamw', lr: 0.5 }).deserialize(good), 'OPTIMIZER_STATE');
    expectKalmanError(() => createOptimizer({ type: 'sgd' }).deserialize(good), 'OPTIMIZER_STATE');
  });
});
