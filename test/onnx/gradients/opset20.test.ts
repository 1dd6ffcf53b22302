/**
 * Every rule once more at opset 20: the first case of each op whose form is still valid there (for
 * ReduceMean, its axes-as-input form from opset 18), so the ops a rule emits are checked against the
 * newest opset we support as well as the one the case was written for.
 */
import { RULES } from '../../../src/onnx/gradients/index.js';
import { BROADCAST } from './broadcast.cases.js';
import { CONV } from './conv.cases.js';
import { ELEMENTWISE } from './elementwise.cases.js';
import { defineCases, type GradCase } from './harness.js';
import { LINEAR } from './linear.cases.js';
import { REDUCE } from './reduce.cases.js';
import { SHAPE } from './shape.cases.js';

const ALL: GradCase[] = [...ELEMENTWISE, ...BROADCAST, ...LINEAR, ...REDUCE, ...SHAPE, ...CONV];
const validAt20 = (c: GradCase) => c.opset >= (c.op === 'ReduceMean' ? 18 : 13);

defineCases(Object.keys(RULES).map((op) => {
  const c = ALL.find((k) => k.op === op && validAt20(k));
  if (!c) throw new Error(`no case of ${op} is valid at opset 20`);
  return { ...c, opset: 20, label: `${c.label}, written for opset ${c.opset}` };
}));
