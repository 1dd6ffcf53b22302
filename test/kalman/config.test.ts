import { describe, expect, it } from 'vitest';
import {
  createOptimizer,
  formatRange,
  KalmanError,
  needsOf,
  OPTIMIZER_DEFAULTS,
  OPTIMIZER_FAMILY,
  OPTIMIZER_PARAMS,
  OPTIMIZER_TYPES,
  validateOptimizerConfig,
  type OptimizerConfigInput,
  type ParamSpec,
} from '../../src/kalman/index.js';
import { expectKalmanError } from './helpers.js';

function configError(input: unknown): KalmanError {
  return expectKalmanError(() => validateOptimizerConfig(input), 'OPTIMIZER_CONFIG');
}

describe('optimizer config tables', () => {
  it('lists every type with a family, and every hyperparameter with a default inside its own range', () => {
    expect([...OPTIMIZER_TYPES].sort()).toEqual(['adagrad', 'adamw', 'kfac', 'loko', 'r-kalman', 'reng', 'ring', 'sgd']);
    for (const type of OPTIMIZER_TYPES) {
      expect(OPTIMIZER_FAMILY[type]).toMatch(/^(kalman|kfac|first-order)$/);
      for (const [field, spec] of Object.entries(OPTIMIZER_PARAMS[type] as Record<string, ParamSpec>)) {
        expect(spec.description.length, `${type}.${field}`).toBeGreaterThan(5);
        expect(() => validateOptimizerConfig({ type, [field]: spec.default }), `${type}.${field}`).not.toThrow();
      }
    }
  });

  it('fills defaults: {type} alone gives OPTIMIZER_DEFAULTS, and the defaults validate to themselves', () => {
    for (const type of OPTIMIZER_TYPES) {
      expect(createOptimizer({ type } as OptimizerConfigInput).config).toEqual(OPTIMIZER_DEFAULTS[type]);
      expect(validateOptimizerConfig(OPTIMIZER_DEFAULTS[type])).toEqual(OPTIMIZER_DEFAULTS[type]);
    }
    // Chosen by bench/online.ts --sweep (README "Online adaptation").
    expect(OPTIMIZER_DEFAULTS.loko).toMatchObject({ observation: 'loss', noise: 'ema', p0Low: 0.03, p0High: 0.3, r0: 0.1, beta: 1, forgetting: 1 });
    expect(OPTIMIZER_DEFAULTS['r-kalman']).toMatchObject({ observation: 'loss', rho: 1e-4 });
    expect(validateOptimizerConfig({ type: 'loko', observation: 'probs' })).toMatchObject({ noise: 'categorical' });
    expect(validateOptimizerConfig({ type: 'loko', observation: 'loss' })).toMatchObject({ noise: 'ema' });
    // Categorical noise without an observation implies the probs observation; a conflicting one is still refused.
    expect(validateOptimizerConfig({ type: 'loko', noise: 'categorical' })).toMatchObject({ observation: 'probs', noise: 'categorical' });
    expect(validateOptimizerConfig({ type: 'r-kalman', noise: 'categorical' })).toMatchObject({ observation: 'probs', noise: 'categorical' });
    expect(validateOptimizerConfig({ type: 'adamw', lr: 3e-4 })).toEqual({ ...OPTIMIZER_DEFAULTS.adamw, lr: 3e-4 });
  });

  it('formats ranges for docs', () => {
    expect(formatRange(OPTIMIZER_PARAMS.loko.forgetting)).toBe('(0, 1]');
    expect(formatRange(OPTIMIZER_PARAMS.loko.beta)).toBe('[0, 1]');
    expect(formatRange(OPTIMIZER_PARAMS.adamw.beta1)).toBe('[0, 1)');
    expect(formatRange(OPTIMIZER_PARAMS.kfac.inverseEvery)).toBe('integers in [1, 1000000]');
    expect(formatRange(OPTIMIZER_PARAMS.loko.observation)).toBe('probs | loss | regression');
  });

  it('declares what each optimizer needs per sample', () => {
    const needs = (c: Parameters<typeof validateOptimizerConfig>[0]) => needsOf(validateOptimizerConfig(c));
    expect(needs({ type: 'loko' })).toEqual(['loss', 'grad']);
    expect(needs({ type: 'loko', observation: 'probs' })).toEqual(['jacobian']);
    expect(needs({ type: 'loko', observation: 'regression' })).toEqual(['jacobian']);
    expect(needs({ type: 'loko', observation: 'loss' })).toEqual(['loss', 'grad']);
    expect(needs({ type: 'r-kalman' })).toEqual(['loss', 'grad']);
    expect(needs({ type: 'r-kalman', observation: 'probs' })).toEqual(['jacobian', 'grad']);
    expect(needs({ type: 'r-kalman', observation: 'probs', rho: 0 })).toEqual(['jacobian']);
    expect(needs({ type: 'r-kalman', observation: 'loss' })).toEqual(['loss', 'grad']);
    expect(needs({ type: 'kfac' })).toEqual(['factors']);
    expect(needs({ type: 'ring' })).toEqual(['factors']);
    expect(needs({ type: 'reng' })).toEqual(['factors', 'hvp']);
    expect(needs({ type: 'reng', rho: 0 })).toEqual(['factors']);
    for (const type of ['sgd', 'adamw', 'adagrad'] as const) expect(needs({ type })).toEqual(['grad']);
  });
});

describe('invalid configs → OPTIMIZER_CONFIG naming the field and its range', () => {
  it('out-of-range numbers', () => {
    const e1 = configError({ type: 'loko', beta: 1.5 });
    expect(e1.message).toBe('optimizer.beta must be a number in [0, 1], got 1.5');
    expect(e1.details).toMatchObject({ field: 'beta', value: 1.5, range: '[0, 1]', min: 0, max: 1 });
    expect(configError({ type: 'loko', forgetting: 0 }).message).toContain('optimizer.forgetting must be a number in (0, 1]');
    expect(configError({ type: 'adamw', beta2: 1 }).message).toContain('[0, 1)');
    expect(configError({ type: 'sgd', lr: -0.1 }).details?.['field']).toBe('lr');
    expect(configError({ type: 'sgd', lr: NaN }).details?.['field']).toBe('lr');
    expect(configError({ type: 'sgd', lr: Infinity }).details?.['field']).toBe('lr');
    expect(configError({ type: 'sgd', lr: '0.1' }).message).toContain("got '0.1'");
    expect(configError({ type: 'r-kalman', rho: -1 }).details?.['field']).toBe('rho');
    expect(configError({ type: 'reng', hvpEps: 0 }).details?.['field']).toBe('hvpEps');
  });

  it('integers, enums and booleans', () => {
    expect(configError({ type: 'kfac', inverseEvery: 1.5 }).message).toBe('optimizer.inverseEvery must be an integer in [1, 1000000], got 1.5');
    expect(configError({ type: 'ring', nsMaxIter: 0 }).details?.['field']).toBe('nsMaxIter');
    const e = configError({ type: 'loko', observation: 'logits' });
    expect(e.message).toBe("optimizer.observation must be one of probs | loss | regression, got 'logits'");
    expect(e.details?.['allowed']).toEqual(['probs', 'loss', 'regression']);
    expect(configError({ type: 'sgd', nesterov: 'yes' }).details?.['field']).toBe('nesterov');
  });

  it('unknown fields, unknown or missing types, non-objects', () => {
    const e = configError({ type: 'sgd', beta1: 0.9 });
    expect(e.message).toContain('optimizer.beta1 is not a hyperparameter of sgd');
    expect(e.details?.['field']).toBe('beta1');
    expect(configError({ type: 'sophia' }).details?.['field']).toBe('type');
    expect(configError({ lr: 0.1 }).message).toContain('optimizer.type must be one of loko | r-kalman');
    expect(configError(null).code).toBe('OPTIMIZER_CONFIG');
    expect(configError([]).code).toBe('OPTIMIZER_CONFIG');
    expect(configError('loko').code).toBe('OPTIMIZER_CONFIG');
  });

  it('cross-field rules', () => {
    const e = configError({ type: 'loko', p0Low: 0.5, p0High: 0.1 });
    expect(e.details?.['field']).toBe('p0High');
    expect(e.message).toContain('p0Low');
    const c = configError({ type: 'r-kalman', observation: 'regression', noise: 'categorical' });
    expect(c.details?.['field']).toBe('noise');
    expect(c.message).toContain("observation 'probs'");
  });

  it('createOptimizer throws the same errors', () => {
    expect(() => createOptimizer({ type: 'adagrad', lr: 0 })).toThrow(/optimizer\.lr must be a number in \(0, 10\]/);
  });
});
