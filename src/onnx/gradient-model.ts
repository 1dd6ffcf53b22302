/**
 * A whole-graph gradient model: the forward model plus, for chosen outputs, seed inputs
 * `<output>@grad` and, for chosen float inputs, outputs `<input>@grad` holding the vector-Jacobian
 * product. Used by the rule checks and by anyone who needs plain reverse mode over a model.
 */
import { InvalidConfigError, OutputNotFoundError } from '../errors.js';
import { buildGradients } from './autodiff.js';
import { GraphBuilder } from './builder.js';
import { cloneModel, encodeModel, realInputs } from './model.js';
import { DT, defaultOpset, type ModelProto } from './proto.js';
import type { OnnxRuntime } from './runtime.js';
import { probeShapes } from './shapes.js';

export interface GradientModelSpec {
  /** Float graph inputs to differentiate with respect to. */
  wrt: readonly string[];
  /** Outputs whose incoming gradients become seed inputs named `<output>@grad`. Default: all outputs. */
  outputs?: readonly string[];
}

/** Build the gradient model; outputs `<wrt>@grad` (zeros when an input does not reach the outputs). */
export async function buildGradientModel(model: ModelProto, spec: GradientModelSpec, runtime: OnnxRuntime): Promise<Uint8Array> {
  const shapes = await probeShapes(model, runtime);
  const m = cloneModel(model);
  const g = m.graph!;
  const inputs = new Set(realInputs(m).map((i) => i.name));
  for (const w of spec.wrt) if (!inputs.has(w)) throw new InvalidConfigError(`'${w}' is not an input of the model`, { input: w });
  // By default every float32 output gets a seed; integer and boolean outputs carry no gradient.
  const outs = spec.outputs ?? (g.output ?? []).map((o) => o.name!).filter((o) => shapes.tensors.get(o)?.dtype === DT.FLOAT);
  const b = new GraphBuilder(g, 'grad');
  const seeds = outs.map((o) => {
    const seed = `${o}@grad`;
    b.reserve(seed);
    const info = (g.output ?? []).find((v) => v.name === o);
    if (!info) throw new OutputNotFoundError(o, (g.output ?? []).map((v) => v.name!));
    g.input!.push({ name: seed, type: info.type ?? { tensorType: { elemType: DT.FLOAT } } });
    return { output: o, seed };
  });
  const grads = buildGradients({ graph: g, opset: defaultOpset(m), shapes, wrt: spec.wrt, seeds, builder: b });
  for (const w of spec.wrt) {
    const name = `${w}@grad`;
    const gr = grads.get(w) ?? null;
    if (gr) b.nodeNamed('Identity', [gr], [name]);
    else b.nodeNamed('ConstantOfShape', [b.shape(w)], [name], { value: { name: '', dataType: DT.FLOAT, dims: [1], floatData: [0] } });
    g.output!.push({ name, type: { tensorType: { elemType: DT.FLOAT } } });
  }
  b.flushInto(g);
  return encodeModel(m);
}
