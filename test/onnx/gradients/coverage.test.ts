/**
 * Every gradient rule in RULES has finite-difference cases at two or more shapes or forms; every case
 * names a real rule (or `graph` for whole-graph cases), and case names are unique.
 */
import { describe, expect, it } from 'vitest';
import { RULES } from '../../../src/onnx/gradients/index.js';
import { BROADCAST } from './broadcast.cases.js';
import { CONV } from './conv.cases.js';
import { ELEMENTWISE } from './elementwise.cases.js';
import { GRAPH } from './graph.cases.js';
import type { GradCase } from './harness.js';
import { LINEAR } from './linear.cases.js';
import { REDUCE } from './reduce.cases.js';
import { SHAPE } from './shape.cases.js';

const ALL: GradCase[] = [...ELEMENTWISE, ...BROADCAST, ...LINEAR, ...REDUCE, ...SHAPE, ...CONV, ...GRAPH];

describe('finite-difference coverage', () => {
  it.each(Object.keys(RULES))('%s has at least two cases', (op) => {
    const cases = ALL.filter((c) => c.op === op);
    expect(cases.length).toBeGreaterThanOrEqual(2);
    // The op really is in each of its cases' graphs.
    for (const c of cases) expect(c.nodes.some((n) => n.op === op)).toBe(true);
  });

  it('every case names a rule (or is a whole-graph case)', () => {
    const stray = ALL.filter((c) => c.op !== 'graph' && !(c.op in RULES)).map((c) => c.op);
    expect(stray).toEqual([]);
  });

  it('case names are unique', () => {
    const names = ALL.map((c) => `${c.op} ${c.label} (opset ${c.opset})`);
    expect(names.length).toBe(new Set(names).size);
  });
});
