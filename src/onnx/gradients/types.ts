/**
 * The contract between the autodiff engine and one op's gradient rule. A rule receives the forward
 * node, the incoming gradient of each output (null when an output does not reach the loss) and emits
 * nodes that compute the gradient of each input it is asked for. Un-broadcasting and fan-out
 * accumulation are the engine's job (`broadcasts: true` asks the engine to reduce each result from the
 * output's shape to the input's shape).
 */
import type { GraphBuilder } from '../builder.js';
import type { AttrValue, NodeProto } from '../proto.js';

export interface GradContext {
  node: NodeProto;
  opset: number;
  b: GraphBuilder;
  /** Incoming gradient of each output, or null. */
  dy: (string | null)[];
  /** Whether input i needs a gradient. */
  needs(i: number): boolean;
  x(i: number): string;
  y(i: number): string;
  hasInput(i: number): boolean;
  attrInt(name: string, dflt: number): number;
  attrFloat(name: string, dflt: number): number;
  attrInts(name: string): number[] | undefined;
  attrString(name: string, dflt: string): string;
  attr(name: string): AttrValue | undefined;
  /** Static rank of a forward tensor. */
  rank(name: string): number;
  /** Static dims (null where dynamic). */
  dims(name: string): (number | null)[];
  /** Dims seen in the two probe runs. */
  probeDims(name: string): [number[], number[]];
  dtype(name: string): number;
  /** Values of a constant (initializer or Constant node) as numbers, if the tensor is one. */
  constInts(name: string): number[] | undefined;
  constFloats(name: string): number[] | undefined;
  /** Throw ONNX_UNSUPPORTED_OP for this node with a reason. */
  unsupported(reason: string): never;
  /** float32 zeros shaped like a forward tensor. */
  zerosLike(name: string): string;
  /** Reduce g (shaped like tensor `from`) to the shape of tensor `to`. */
  unbroadcast(g: string, from: string, to: string): string;
  /** Reduce g (with the given probe dims) to the shape of tensor `to`. */
  unbroadcastDims(g: string, fromProbe: [number[], number[]], to: string): string;
  /** The forward nodes that read a tensor (graph outputs are not nodes: check `isOutput` too). */
  consumers(name: string): readonly NodeProto[];
  /** Whether a tensor is a graph output or carries a seed. */
  isOutput(name: string): boolean;
  /**
   * The complete gradient of a tensor produced downstream of this node (so every node reading it has
   * been differentiated already), or null when it has none or is not downstream.
   */
  gradOf(name: string): string | null;
  /**
   * The node that makes a tensor: a forward node, or a gradient node emitted so far (undefined for
   * graph inputs and initializers).
   */
  producer(name: string): NodeProto | undefined;
}

/** One op's rule: a gradient per input (null or undefined for none). */
export interface GradRule {
  grad(ctx: GradContext): (string | null | undefined)[];
  /** Results are in the output's (broadcast) shape; the engine reduces them to each input's shape. */
  broadcasts?: boolean;
}
