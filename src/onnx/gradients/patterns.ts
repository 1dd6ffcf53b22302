/**
 * Multi-node patterns the engine differentiates as one unit, because their joint VJP is cheaper than
 * the chain of per-op VJPs. A pattern is only taken when its inner tensors are read by nothing else.
 *
 * erf-GELU, as exporters write GELU before opset 20: y = (x · (erf(x / √2) + 1)) · 0.5 (any operand
 * order, Div by √2 or Mul by 1/√2). VJP from x alone: dx = dy · (½(1 + erf(u)) + x·φ(x)), u = x/√2,
 * φ(x) = exp(−u²)/√(2π). Reading only x also lets onnxruntime fuse the forward pattern into one kernel
 * again (reading the intermediates kept it five), so the forward and backward take 11 full-size ops
 * instead of 14.
 */
import type { GraphBuilder } from '../builder.js';
import type { ConstantTable } from '../model.js';
import type { NodeProto } from '../proto.js';

export interface PatternMatch {
  /** Every node of the pattern; `last` writes `output`. */
  nodes: ReadonlySet<NodeProto>;
  last: NodeProto;
  input: string;
  output: string;
  /** Emit dx from dy. */
  grad(b: GraphBuilder, dy: string): string;
}

const near = (v: number | undefined, want: number) => v !== undefined && Math.abs(v - want) <= 1e-6 * Math.abs(want);

/** What the matcher needs to know of the graph (the engine's own indexes). */
export interface GraphIndex {
  readers(name: string): readonly NodeProto[];
  producer(name: string): NodeProto | undefined;
  isOutput(name: string): boolean;
}

/** Find every erf-GELU in the graph whose intermediates nothing else reads. */
export function matchPatterns(nodes: readonly NodeProto[], consts: ConstantTable, graph: GraphIndex): PatternMatch[] {
  const scalar = (name: string): number | undefined => {
    const v = consts.get(name);
    return v && v.data.length === 1 ? Number(v.data[0]) : undefined;
  };
  /** The one node reading t, when t is inner (read once, not a graph output). */
  const onlyReader = (t: string): NodeProto | undefined => {
    const r = graph.readers(t);
    return r.length === 1 && !graph.isOutput(t) ? r[0] : undefined;
  };
  /** For a binary node with one scalar-constant operand: [the other operand, the constant]. */
  const withConst = (n: NodeProto): [string, number] | undefined => {
    const [p, q] = n.input ?? [];
    if (!p || !q) return undefined;
    const cq = scalar(q);
    if (cq !== undefined && scalar(p) === undefined) return [p, cq];
    const cp = scalar(p);
    if (cp !== undefined && n.opType !== 'Div' && scalar(q) === undefined) return [q, cp];
    return undefined;
  };
  const plain = (n: NodeProto | undefined, op: string): n is NodeProto => !!n && n.opType === op && (!n.domain || n.domain === 'ai.onnx') && (n.output?.length ?? 0) === 1;
  const found: PatternMatch[] = [];
  for (const erf of nodes) {
    if (!plain(erf, 'Erf')) continue;
    const scaleNode = graph.producer(erf.input![0]!);
    if (!(plain(scaleNode, 'Div') || plain(scaleNode, 'Mul')) || onlyReader(scaleNode.output![0]!) !== erf) continue;
    const sc = withConst(scaleNode);
    if (!sc) continue;
    const [x, c] = sc;
    if (!((scaleNode.opType === 'Div' && near(c, Math.SQRT2)) || (scaleNode.opType === 'Mul' && near(c, Math.SQRT1_2)))) continue;
    const add = onlyReader(erf.output![0]!);
    if (!plain(add, 'Add') || !near(withConst(add)?.[1], 1)) continue;
    const mulX = onlyReader(add.output![0]!);
    if (!plain(mulX, 'Mul') || !(mulX.input ?? []).includes(x) || !(mulX.input ?? []).includes(add.output![0]!)) continue;
    const half = onlyReader(mulX.output![0]!);
    if (!plain(half, 'Mul') || !near(withConst(half)?.[1], 0.5)) continue;
    found.push({
      nodes: new Set([scaleNode, erf, add, mulX, half]), last: half, input: x, output: half.output![0]!,
      grad: (b, dy) => {
        // GELU'(x) = Φ(x) + x·φ(x) = ½(1 + erf(u) + u·(2/√π)·e^{−u²}), u = x/√2: the ½ on dy (a Mul
        // onnxruntime folds into the MatMul that makes dy, where one does), the rest one Sum.
        const u = b.op('Mul', [x, b.f32([Math.SQRT1_2])]);
        const derf = b.op('Exp', [b.op('Sub', [b.f32([Math.log(2 / Math.sqrt(Math.PI))]), b.op('Mul', [u, u])])]);
        const twice = b.op('Sum', [b.op('Erf', [u]), b.op('Mul', [u, derf]), b.f32([1])]);
        return b.op('Mul', [b.op('Mul', [dy, b.f32([0.5])]), twice], {}, 'gelu_grad');
      },
    });
  }
  return found;
}
