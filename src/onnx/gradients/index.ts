/**
 * The registry of gradient rules: one explicit list, one file per op named after it, plus the ops
 * that are not differentiable (they pass no gradient and are simply run).
 */
import { Add } from './Add.js';
import { AveragePool } from './AveragePool.js';
import { BatchNormalization } from './BatchNormalization.js';
import { Cast } from './Cast.js';
import { Clip } from './Clip.js';
import { Concat } from './Concat.js';
import { Conv } from './Conv.js';
import { Div } from './Div.js';
import { Dropout } from './Dropout.js';
import { Erf } from './Erf.js';
import { Exp } from './Exp.js';
import { Expand } from './Expand.js';
import { Flatten } from './Flatten.js';
import { Gather } from './Gather.js';
import { Gelu } from './Gelu.js';
import { Gemm } from './Gemm.js';
import { GlobalAveragePool } from './GlobalAveragePool.js';
import { Identity } from './Identity.js';
import { LayerNormalization } from './LayerNormalization.js';
import { LeakyRelu } from './LeakyRelu.js';
import { Log } from './Log.js';
import { LogSoftmax } from './LogSoftmax.js';
import { MatMul } from './MatMul.js';
import { Max } from './Max.js';
import { MaxPool } from './MaxPool.js';
import { Min } from './Min.js';
import { Mul } from './Mul.js';
import { Neg } from './Neg.js';
import { Pad } from './Pad.js';
import { Pow } from './Pow.js';
import { Reciprocal } from './Reciprocal.js';
import { ReduceMean } from './ReduceMean.js';
import { ReduceSum } from './ReduceSum.js';
import { Relu } from './Relu.js';
import { Reshape } from './Reshape.js';
import { Sigmoid } from './Sigmoid.js';
import { Slice } from './Slice.js';
import { Softmax } from './Softmax.js';
import { Split } from './Split.js';
import { Sqrt } from './Sqrt.js';
import { Squeeze } from './Squeeze.js';
import { Sub } from './Sub.js';
import { Sum } from './Sum.js';
import { Tanh } from './Tanh.js';
import { Transpose } from './Transpose.js';
import { Unsqueeze } from './Unsqueeze.js';
import { Where } from './Where.js';
import type { GradRule } from './types.js';

export type { GradRule, GradContext } from './types.js';

export const RULES: Readonly<Record<string, GradRule>> = {
  Add, AveragePool, BatchNormalization, Cast, Clip, Concat, Conv, Div, Dropout, Erf, Exp, Expand, Flatten,
  Gather, Gelu, Gemm, GlobalAveragePool, Identity, LayerNormalization, LeakyRelu, Log, LogSoftmax, MatMul,
  Max, MaxPool, Min, Mul, Neg, Pad, Pow, Reciprocal, ReduceMean, ReduceSum, Relu, Reshape, Sigmoid, Slice,
  Softmax, Split, Sqrt, Squeeze, Sub, Sum, Tanh, Transpose, Unsqueeze, Where,
};

/** Ops whose outputs carry no gradient (integer/boolean results, or zero almost everywhere). */
export const NON_DIFFERENTIABLE: ReadonlySet<string> = new Set([
  'Shape', 'Size', 'Constant', 'ConstantOfShape', 'Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual',
  'Not', 'And', 'Or', 'Xor', 'Range', 'ArgMax', 'ArgMin', 'NonZero', 'OneHot', 'EyeLike', 'Floor', 'Ceil',
  'Round', 'Sign', 'IsNaN', 'IsInf', 'RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike',
  'Bernoulli',
]);
