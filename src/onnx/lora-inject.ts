/**
 * LoRA injection (DESIGN 3.1): list every weight LoRA can adapt (a constant 2-D weight feeding MatMul
 * on either side, or Gemm with any transA/transB) and add, for the chosen ones, the PEFT-compatible
 * branch y = x·W (+ b) + s·(x·Aᵀ)·Bᵀ with A [r, in] and B [out, r] as graph inputs, s = alpha/r
 * (alpha/√r with rsLoRA). A and B are inputs, not initializers, so one session serves every adapter.
 * Module names follow the exporter's node scope (`/enc/layers.0/linear1/MatMul` → `enc.layers.0.linear1`),
 * else the weight's name (`l1.weight` → `l1`), else the node name, so a PEFT export loads onto the
 * original PyTorch model.
 */
import { InvalidConfigError, InvalidRankError, ModelFormatError, TargetNotFoundError } from '../errors.js';
import { GraphBuilder } from './builder.js';
import { ConstantTable, cloneModel } from './model.js';
import { DT, attrFloat, attrInt, dtypeName, f, type ModelProto, type NodeProto } from './proto.js';

/**
 * Where the weight sits. `right`: y = x·W with W [in, out] (MatMul input 1, or Gemm input B).
 * `left`: y = W·x with W [out, in] acting on x's second-to-last axis (MatMul input 0, or Gemm input A).
 */
export type TargetForm = 'right' | 'left';

/** One weight LoRA can adapt. */
export interface TargetInfo {
  /** PEFT module name, e.g. `layers.0.attn.q`. */
  module: string;
  node: string;
  opType: 'MatMul' | 'Gemm';
  /** Name of the weight tensor (initializer or Constant output) and where it is held. */
  weight: string;
  weightHolder: 'initializer' | 'constant';
  /** The weight's dims as stored. */
  weightDims: number[];
  /** Which node input is the weight (0 or 1). */
  weightInput: 0 | 1;
  form: TargetForm;
  /** Whether the stored weight is the transpose of the form's natural layout (Gemm transA/transB). */
  weightTransposed: boolean;
  /** Gemm's alpha (1 for MatMul): the merged weight change is divided by it. */
  gemmAlpha: number;
  in: number;
  out: number;
  /** The same weight tensor also feeds another target (tied weights: each target has its own adapter, and a merged export gives each its own merged copy). */
  shared: boolean;
}

/** How to choose and shape the adapters. */
export interface LoraConfig {
  /** Module names (PEFT suffix matching: `q` matches `layers.0.attn.q`), `{regex}` (full match), or 'all'. */
  targets: readonly string[] | { regex: string } | 'all';
  rank: number;
  /** Scaling numerator; default = rank (s = 1). */
  alpha?: number;
  /** rsLoRA: s = alpha/√r instead of alpha/r. */
  rslora?: boolean;
}

/** A target with its injected adapter. */
export interface InjectedSite extends TargetInfo {
  rank: number;
  scale: number;
  /** Graph input names of A [r, in] and B [out, r]. */
  aInput: string;
  bInput: string;
  /** The activation the weight multiplies, as the node reads it. */
  data: string;
  /**
   * Whether `data` must be transposed (last two axes) to get the canonical activation x [..., in],
   * one row per token: a Gemm that reads it transposed, or a left-form weight (which acts on columns).
   */
  dataTransposed: boolean;
  /** v = x·Aᵀ as the branch computes it ([..., r], or [..., r, N] for the left form). */
  v: string;
  /** The node output the branch is added to (renamed) and the original output name (now the sum). */
  baseOutput: string;
  output: string;
}

function moduleName(node: NodeProto, weight: string, index: number): string {
  const name = node.name ?? '';
  if (name.includes('/')) {
    const parts = name.replace(/^\/+/, '').split('/').filter(Boolean);
    if (parts.length > 1) return parts.slice(0, -1).join('.');
  }
  const w = weight.replace(/\.(weight|kernel|W)$/, '');
  if (w !== weight && /^[A-Za-z_][\w.]*$/.test(w)) return w;
  return name || `${node.opType}_${index}`;
}

/** Every weight LoRA can adapt, in graph order, with its shape. */
export function listTargets(model: ModelProto): TargetInfo[] {
  const g = model?.graph;
  if (!g) throw new ModelFormatError('not a decoded ONNX model: it has no graph (pass decodeModel(bytes), not the bytes)');
  const consts = new ConstantTable(g);
  const isWeight = (name: string | undefined) =>
    !!name && consts.has(name) && consts.dims(name)!.length === 2 && consts.dtype(name) === DT.FLOAT;
  const out: TargetInfo[] = [];
  (g.node ?? []).forEach((n, index) => {
    const ins = n.input ?? [];
    if (n.domain) return;
    let info: Omit<TargetInfo, 'module' | 'shared' | 'node'> | null = null;
    if (n.opType === 'MatMul') {
      if (isWeight(ins[1]) && !isWeight(ins[0])) {
        const [i, o] = consts.dims(ins[1]!)!;
        info = { opType: 'MatMul', weight: ins[1]!, weightInput: 1, form: 'right', weightTransposed: false, gemmAlpha: 1, in: i!, out: o!, weightHolder: consts.holder(ins[1]!)!, weightDims: [i!, o!] };
      } else if (isWeight(ins[0]) && !isWeight(ins[1])) {
        const [o, i] = consts.dims(ins[0]!)!;
        info = { opType: 'MatMul', weight: ins[0]!, weightInput: 0, form: 'left', weightTransposed: false, gemmAlpha: 1, in: i!, out: o!, weightHolder: consts.holder(ins[0]!)!, weightDims: [o!, i!] };
      }
    } else if (n.opType === 'Gemm') {
      const tA = attrInt(n, 'transA', 0) === 1;
      const tB = attrInt(n, 'transB', 0) === 1;
      const alpha = attrFloat(n, 'alpha', 1);
      if (isWeight(ins[1]) && !isWeight(ins[0])) {
        const d = consts.dims(ins[1]!)!;
        const [i, o] = tB ? [d[1]!, d[0]!] : [d[0]!, d[1]!];
        info = { opType: 'Gemm', weight: ins[1]!, weightInput: 1, form: 'right', weightTransposed: tB, gemmAlpha: alpha, in: i, out: o, weightHolder: consts.holder(ins[1]!)!, weightDims: d };
      } else if (isWeight(ins[0]) && !isWeight(ins[1])) {
        const d = consts.dims(ins[0]!)!;
        const [o, i] = tA ? [d[1]!, d[0]!] : [d[0]!, d[1]!];
        info = { opType: 'Gemm', weight: ins[0]!, weightInput: 0, form: 'left', weightTransposed: tA, gemmAlpha: alpha, in: i, out: o, weightHolder: consts.holder(ins[0]!)!, weightDims: d };
      }
    }
    if (info) out.push({ ...info, module: moduleName(n, info.weight, index), node: n.name || `${n.opType}_${index}`, shared: false });
  });
  // Unique module names (a module with two weight products gets `#2`, ...), and tied weights flagged.
  const seen = new Map<string, number>();
  const weightUse = new Map<string, number>();
  for (const t of out) weightUse.set(t.weight, (weightUse.get(t.weight) ?? 0) + 1);
  for (const t of out) {
    const k = (seen.get(t.module) ?? 0) + 1;
    seen.set(t.module, k);
    if (k > 1) t.module = `${t.module}#${k}`;
    t.shared = (weightUse.get(t.weight) ?? 0) > 1;
  }
  return out;
}

/** Element types (by name) of the constant 2-D weights of MatMul/Gemm nodes that are not float32. */
function otherTypedWeights(model: ModelProto): string[] {
  const g = model.graph!;
  const consts = new ConstantTable(g);
  const out: string[] = [];
  for (const n of g.node ?? []) {
    if (n.domain || (n.opType !== 'MatMul' && n.opType !== 'Gemm')) continue;
    for (const name of (n.input ?? []).slice(0, 2)) {
      if (name && consts.has(name) && consts.dims(name)!.length === 2 && consts.dtype(name) !== DT.FLOAT) out.push(dtypeName(consts.dtype(name)));
    }
  }
  return out;
}

/** Validate a LoRA config and return the targets it selects. */
export function selectTargets(model: ModelProto, config: LoraConfig): TargetInfo[] {
  if (!Number.isInteger(config.rank) || config.rank <= 0) throw new InvalidRankError(config.rank);
  if (config.alpha !== undefined && !(Number.isFinite(config.alpha) && config.alpha > 0)) {
    throw new InvalidConfigError(`alpha must be a positive finite number, got ${config.alpha}`, { alpha: config.alpha });
  }
  const all = listTargets(model);
  const available = all.map((t) => t.module);
  if (config.targets === 'all') {
    if (all.length === 0) {
      const other = otherTypedWeights(model);
      const why = other.length > 0
        ? `; its MatMul/Gemm weights are ${[...new Set(other)].join(', ')}, and LoRA adapts float32 weights: export or convert the model in float32`
        : '';
      throw new TargetNotFoundError(`the model has no weight LoRA can adapt (no MatMul/Gemm with a constant 2-D float32 weight)${why}`, { available, ...(other.length > 0 ? { weightTypes: [...new Set(other)] } : {}) });
    }
    return all;
  }
  if (Array.isArray(config.targets)) {
    const names = config.targets as readonly string[];
    if (names.length === 0) throw new InvalidConfigError('targets must name at least one module', { available });
    const chosen = new Set<TargetInfo>();
    for (const name of names) {
      if (typeof name !== 'string' || name.length === 0) throw new InvalidConfigError('target names must be non-empty strings');
      const hits = all.filter((t) => t.module === name || t.module.endsWith(`.${name}`) || t.module.replace(/#\d+$/, '') === name);
      if (hits.length === 0) throw new TargetNotFoundError(`target '${name}' matches no adaptable weight`, { target: name, available });
      hits.forEach((h) => chosen.add(h));
    }
    return all.filter((t) => chosen.has(t));
  }
  const { regex } = config.targets as { regex: string };
  let re: RegExp;
  try {
    re = new RegExp(`^(?:${regex})$`);
  } catch (e) {
    throw new InvalidConfigError(`targets.regex is not a valid regular expression: ${(e as Error).message}`, { regex });
  }
  const hits = all.filter((t) => re.test(t.module));
  if (hits.length === 0) throw new TargetNotFoundError(`targets.regex '${regex}' matches no adaptable weight`, { regex, available });
  return hits;
}

/** The scaling s of a config. */
export function loraScale(config: LoraConfig): number {
  const alpha = config.alpha ?? config.rank;
  return config.rslora ? alpha / Math.sqrt(config.rank) : alpha / config.rank;
}

/** Add the adapters as graph inputs; returns a new model (the input is not changed) and the sites. */
export function injectLora(model: ModelProto, config: LoraConfig): { model: ModelProto; sites: InjectedSite[] } {
  const targets = selectTargets(model, config);
  const m = cloneModel(model);
  const g = m.graph!;
  const r = config.rank;
  const s = loraScale(config);
  const b = new GraphBuilder(g, 'lora');
  const byNode = new Map<string, TargetInfo>(targets.map((t) => [t.node, t]));
  const nodes = g.node ?? [];
  const rebuilt: NodeProto[] = [];
  const sites: InjectedSite[] = [];
  nodes.forEach((n, index) => {
    rebuilt.push(n);
    const t = byNode.get(n.name || `${n.opType}_${index}`);
    if (!t) return;
    const aInput = `${t.module}.lora_A`;
    const bInput = `${t.module}.lora_B`;
    b.reserve(aInput);
    b.reserve(bInput);
    g.input!.push({ name: aInput, type: { tensorType: { elemType: DT.FLOAT, shape: { dim: [{ dimValue: r }, { dimValue: t.in }] } } } });
    g.input!.push({ name: bInput, type: { tensorType: { elemType: DT.FLOAT, shape: { dim: [{ dimValue: t.out }, { dimValue: r }] } } } });
    const output = n.output![0]!;
    const baseOutput = b.fresh(`${t.module}/base`);
    n.output![0] = baseOutput;
    const data = n.input![1 - t.weightInput]!;
    const start = b.nodes.length;
    const tA = attrInt(n, 'transA', 0);
    const tB = attrInt(n, 'transB', 0);
    let v: string;
    let dataTransposed: boolean;
    if (t.opType === 'Gemm') {
      // Gemm sites are 2-D: two Gemm nodes, the second adding s·v·Bᵀ (or s·B·v) onto the base output.
      if (t.form === 'right') {
        v = b.op('Gemm', [data, aInput], { transA: tA, transB: 1 }, `${t.module}/v`);
        b.nodeNamed('Gemm', [v, bInput, baseOutput], [output], { transB: 1, alpha: f(s) });
        dataTransposed = tA === 1;
      } else {
        v = b.op('Gemm', [aInput, data], { transB: tB }, `${t.module}/v`);
        b.nodeNamed('Gemm', [bInput, v, baseOutput], [output], { alpha: f(s) });
        dataTransposed = tB === 0;
      }
    } else if (t.form === 'right') {
      v = b.op('MatMul', [data, b.op('Transpose', [aInput], { perm: [1, 0] })], {}, `${t.module}/v`);
      const z = b.op('Mul', [b.op('MatMul', [v, b.op('Transpose', [bInput], { perm: [1, 0] })]), b.f32([s])], {}, `${t.module}/z`);
      b.nodeNamed('Add', [baseOutput, z], [output]);
      dataTransposed = false;
    } else {
      v = b.op('MatMul', [aInput, data], {}, `${t.module}/v`);
      const z = b.op('Mul', [b.op('MatMul', [bInput, v]), b.f32([s])], {}, `${t.module}/z`);
      b.nodeNamed('Add', [baseOutput, z], [output]);
      dataTransposed = true;
    }
    rebuilt.push(...b.nodes.splice(start));
    sites.push({ ...t, rank: r, scale: s, aInput, bInput, data, dataTransposed, v, baseOutput, output });
  });
  g.node = rebuilt;
  g.initializer = [...(g.initializer ?? []), ...b.initializers];
  return { model: m, sites };
}
