/**
 * Reverse-mode autodiff over an ONNX graph, emitting only standard ai.onnx ops (DESIGN 3.2).
 * The engine orders the work, differentiates only nodes that lie on a path from the `wrt` tensors to
 * a requested output, sums fan-out contributions, and un-broadcasts rule results to input shapes;
 * each op's rule (src/onnx/gradients/<Op>.ts) only maps output gradients to input gradients. A few
 * multi-node patterns (gradients/patterns.ts: the exporters' erf-GELU) are differentiated as one unit
 * when nothing else reads their inner tensors.
 */
import { UnsupportedOpError } from '../errors.js';
import { GraphBuilder } from './builder.js';
import { RULES, NON_DIFFERENTIABLE } from './gradients/index.js';
import { matchPatterns, type PatternMatch } from './gradients/patterns.js';
import type { GradContext } from './gradients/types.js';
import { DT, dtypeName, attrInt, attrFloat, attrInts, attrString, getAttr, type GraphProto, type NodeProto } from './proto.js';
import { staticDims, type ShapeInfo, type TensorShape } from './shapes.js';
import { ConstantTable } from './model.js';
import { reduceSum, sum } from './ops.js';

export interface GradientRequest {
  graph: GraphProto;
  opset: number;
  shapes: ShapeInfo;
  /** Tensors to differentiate with respect to (float32). */
  wrt: readonly string[];
  /** Output tensors and the tensors holding their incoming gradients (seeds). */
  seeds: readonly { output: string; seed: string }[];
  /** Builder to emit into (its nodes are appended by the caller). */
  builder: GraphBuilder;
}

/** Gradient tensor name for each wrt tensor (null when the outputs do not depend on it). */
export type GradientMap = Map<string, string | null>;

const FLOAT_TYPES = new Set<number>([DT.FLOAT, DT.DOUBLE, DT.FLOAT16, DT.BFLOAT16]);

/** A node of a domain other than ai.onnx (spelled '' or 'ai.onnx'): no rule applies to it. */
const foreign = (n: NodeProto) => !!n.domain && n.domain !== 'ai.onnx';

/** Build the backward graph; returns the gradient tensor of each `wrt` tensor. */
export function buildGradients(req: GradientRequest): GradientMap {
  const { graph, opset, shapes, builder: b } = req;
  const nodes = graph.node ?? [];
  const consts = new ConstantTable(graph);
  const isFloat = (name: string) => {
    const s = shapes.tensors.get(name);
    return s ? FLOAT_TYPES.has(s.dtype) : false;
  };

  // Forward reach: float tensors that depend on a wrt tensor through differentiable ops.
  const reach = new Set<string>(req.wrt);
  for (const n of nodes) {
    if (NON_DIFFERENTIABLE.has(n.opType!) && !foreign(n)) continue;
    if ((n.input ?? []).some((i) => reach.has(i))) for (const o of n.output ?? []) if (o && isFloat(o)) reach.add(o);
  }
  // Backward reach: tensors from which a requested output can be reached.
  const needed = new Set<string>(req.seeds.map((s) => s.output));
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k]!;
    if ((n.output ?? []).some((o) => needed.has(o))) for (const i of n.input ?? []) if (i) needed.add(i);
  }

  const contributions = new Map<string, string[]>();
  const add = (name: string, g: string) => {
    const list = contributions.get(name);
    if (list) list.push(g);
    else contributions.set(name, [g]);
  };
  const total = (name: string): string | null => {
    const list = contributions.get(name);
    if (!list || list.length === 0) return null;
    if (list.length === 1) return list[0]!;
    const s = sum(b, list, 'grad_sum');
    contributions.set(name, [s]);
    return s;
  };
  for (const s of req.seeds) add(s.output, s.seed);

  const consumersOf = new Map<string, NodeProto[]>();
  const producedAt = new Map<string, number>();
  nodes.forEach((n, k) => {
    for (const i of n.input ?? []) {
      if (!i) continue;
      const list = consumersOf.get(i);
      if (list) list.push(n);
      else consumersOf.set(i, [n]);
    }
    for (const o of n.output ?? []) if (o) producedAt.set(o, k);
  });
  const outputs = new Set<string>([...(graph.output ?? []).map((o) => o.name!), ...req.seeds.map((s) => s.output)]);
  const index = { readers: (t: string) => consumersOf.get(t) ?? [], producer: (t: string) => nodes[producedAt.get(t) ?? -1], isOutput: (t: string) => outputs.has(t) };
  const graphView = (k: number) => ({
    consumers: index.readers,
    isOutput: index.isOutput,
    gradOf: (name: string) => ((producedAt.get(name) ?? -1) > k ? total(name) : null),
    producer: (name: string) => index.producer(name) ?? emitted(name),
  });
  const emitted = (name: string) => {
    for (let i = b.nodes.length - 1; i >= 0; i--) if (b.nodes[i]!.output?.includes(name)) return b.nodes[i]!;
    return undefined;
  };

  const shapeOf = (name: string): TensorShape => {
    const s = shapes.tensors.get(name);
    if (!s) throw new UnsupportedOpError('?', name, opset, `no shape known for tensor '${name}'`);
    return s;
  };

  // Patterns differentiated as one unit (gradients/patterns.ts), keyed by each of their nodes.
  const patternOf = new Map<NodeProto, PatternMatch>();
  for (const p of matchPatterns(nodes, consts, index)) {
    if ([...p.nodes].some((n) => n !== p.last && (n.output ?? []).some((o) => req.wrt.includes(o)))) continue;
    for (const n of p.nodes) patternOf.set(n, p);
  }

  for (let k = nodes.length - 1; k >= 0; k--) {
    const node = nodes[k]!;
    const ins = node.input ?? [];
    const outs = node.output ?? [];
    if (!ins.some((i) => reach.has(i)) || !outs.some((o) => needed.has(o) && reach.has(o))) continue;
    const pattern = patternOf.get(node);
    if (pattern) {
      // Its inner nodes were handled with its last one (which comes first in this reverse walk).
      if (node !== pattern.last) continue;
      const dyOut = total(pattern.output);
      if (dyOut && reach.has(pattern.input)) add(pattern.input, pattern.grad(b, dyOut));
      continue;
    }
    if (NON_DIFFERENTIABLE.has(node.opType!) && !foreign(node)) continue;
    const dys = outs.map((o) => (reach.has(o) ? total(o) : null));
    if (dys.every((d) => d === null)) continue;
    const opType = foreign(node) ? `${node.domain}.${node.opType}` : node.opType!;
    const rule = foreign(node) ? undefined : RULES[node.opType!];
    const nodeName = node.name || `${node.opType}(${outs[0]})`;
    if (!rule) throw new UnsupportedOpError(opType, nodeName, opset);
    // Rules emit float32 constants, so the gradient path is float32 only.
    for (const o of outs) {
      if (o && reach.has(o) && shapes.tensors.get(o)?.dtype !== DT.FLOAT) {
        throw new UnsupportedOpError(opType, nodeName, opset, `output '${o}' is ${dtypeName(shapes.tensors.get(o)?.dtype)}; only float32 tensors can be differentiated`);
      }
    }
    const needs = ins.map((i) => !!i && reach.has(i));
    const ctx = makeContext(node, nodeName, opset, b, dys, needs, shapeOf, consts, graphView(k));
    const grads = rule.grad(ctx);
    grads.forEach((g, i) => {
      if (!g || !needs[i]) return;
      const name = ins[i]!;
      add(name, rule.broadcasts ? ctx.unbroadcast(g, outs[0]!, name) : g);
    });
  }
  const result: GradientMap = new Map();
  for (const w of req.wrt) result.set(w, total(w));
  return result;
}

function makeContext(
  node: NodeProto, nodeName: string, opset: number, b: GraphBuilder, dy: (string | null)[], needs: boolean[],
  shapeOf: (n: string) => TensorShape, consts: ConstantTable,
  view: Pick<GradContext, 'consumers' | 'isOutput' | 'gradOf' | 'producer'>,
): GradContext {
  const ctx: GradContext = {
    ...view,
    node, opset, b, dy, needs: (i) => needs[i] ?? false,
    x: (i) => node.input![i]!,
    y: (i) => node.output![i]!,
    hasInput: (i) => !!node.input?.[i],
    attrInt: (name, d) => attrInt(node, name, d),
    attrFloat: (name, d) => attrFloat(node, name, d),
    attrInts: (name) => attrInts(node, name),
    attrString: (name, d) => attrString(node, name, d),
    attr: (name) => getAttr(node, name),
    rank: (name) => shapeOf(name).probe[0].length,
    dims: (name) => staticDims(shapeOf(name)),
    probeDims: (name) => shapeOf(name).probe,
    dtype: (name) => shapeOf(name).dtype,
    constInts: (name) => {
      const v = consts.get(name);
      if (!v) return undefined;
      return Array.from(v.data as ArrayLike<number | bigint>, (x) => Number(x));
    },
    constFloats: (name) => {
      const v = consts.get(name);
      if (!v) return undefined;
      return Array.from(v.data as ArrayLike<number | bigint>, (x) => Number(x));
    },
    unsupported: (reason) => {
      throw new UnsupportedOpError(node.opType!, nodeName, opset, reason);
    },
    zerosLike: (name) => b.op('ConstantOfShape', [b.shape(name)], { value: { name: '', dataType: DT.FLOAT, dims: [1], floatData: [0] } }, 'zeros'),
    unbroadcast: (g, from, to) => unbroadcast(b, opset, g, shapeOf(from).probe, shapeOf(to).probe, to),
    unbroadcastDims: (g, fromProbe, to) => unbroadcast(b, opset, g, fromProbe, shapeOf(to).probe, to),
  };
  return ctx;
}

/**
 * Sum `g` (shaped like `from`) down to the shape of tensor `to`: leading extra axes and axes where `to`
 * has size 1 but `from` does not. Decided statically from the probes, so no work when nothing broadcast.
 */
function unbroadcast(b: GraphBuilder, opset: number, g: string, from: [number[], number[]], to: [number[], number[]], toName: string): string {
  const rf = from[0].length;
  const rt = to[0].length;
  const lead = rf - rt;
  const axes: number[] = [];
  for (let i = 0; i < rf; i++) {
    if (i < lead) {
      axes.push(i);
      continue;
    }
    const j = i - lead;
    const toOne = to[0][j] === 1 && to[1][j] === 1;
    const fromOne = from[0][i] === 1 && from[1][i] === 1;
    if (toOne && !fromOne) axes.push(i);
  }
  if (axes.length === 0) return g;
  const red = reduceSum(b, opset, g, axes, 1, 'unbroadcast');
  return b.op('Reshape', [red, b.shape(toName)], {}, 'unbroadcast');
}
