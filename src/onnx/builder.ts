/**
 * Emitting nodes into a graph under construction: fresh unique names, cached constants, and a
 * per-tensor cache of Shape nodes so gradient rules reuse shape subgraphs instead of rebuilding them.
 */
import { encodeAttrs, floatTensor, int64Tensor, type AttrInput, type GraphProto, type NodeProto, type TensorProto } from './proto.js';

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private readonly shapeCache = new Map<string, string>();
  private counter = 0;

  /** `prefix` namespaces every generated name so it cannot clash with the model's own. */
  constructor(graph: GraphProto, private readonly prefix: string) {
    for (const i of graph.input ?? []) this.used.add(i.name ?? '');
    for (const t of graph.initializer ?? []) this.used.add(t.name ?? '');
    for (const n of graph.node ?? []) {
      for (const o of n.output ?? []) this.used.add(o);
      if (n.name) this.used.add(n.name);
    }
  }

  /** A name not used anywhere in the graph. */
  fresh(hint: string): string {
    let name: string;
    do name = `${this.prefix}/${hint}_${this.counter++}`;
    while (this.used.has(name));
    this.used.add(name);
    return name;
  }

  reserve(name: string): void {
    this.used.add(name);
  }

  /** Emit a node; returns its output names. */
  node(opType: string, inputs: readonly string[], attrs: Record<string, AttrInput | undefined> = {}, outputs = 1, hint = opType): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(hint));
    this.nodes.push({ opType, input: [...inputs], output: outs, name: this.fresh(`${hint}_node`), attribute: encodeAttrs(attrs) });
    return outs;
  }

  /** Emit a node with one output. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrInput | undefined> = {}, hint = opType): string {
    return this.node(opType, inputs, attrs, 1, hint)[0]!;
  }

  /** Emit a node whose outputs have given names. */
  nodeNamed(opType: string, inputs: readonly string[], outputs: readonly string[], attrs: Record<string, AttrInput | undefined> = {}): void {
    for (const o of outputs) this.used.add(o);
    this.nodes.push({ opType, input: [...inputs], output: [...outputs], name: this.fresh(`${opType}_node`), attribute: encodeAttrs(attrs) });
  }

  /** A float32 constant (cached by value). */
  f32(values: readonly number[], dims: readonly number[] = values.length === 1 ? [] : [values.length]): string {
    const key = `f:${dims.join(',')}:${values.join(',')}`;
    let name = this.constCache.get(key);
    if (!name) {
      name = this.fresh('const_f');
      this.initializers.push(floatTensor(name, dims, values));
      this.constCache.set(key, name);
    }
    return name;
  }

  /** An int64 constant (cached by value); 1-D by default. */
  i64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i:${dims.join(',')}:${values.join(',')}`;
    let name = this.constCache.get(key);
    if (!name) {
      name = this.fresh('const_i');
      this.initializers.push(int64Tensor(name, dims, values));
      this.constCache.set(key, name);
    }
    return name;
  }

  /** A float32 initializer with given data (not cached). */
  tensor(hint: string, dims: readonly number[], data: Float32Array): string {
    const name = this.fresh(hint);
    this.initializers.push(floatTensor(name, dims, data));
    return name;
  }

  /** Shape(x), built once per tensor. */
  shape(x: string): string {
    let s = this.shapeCache.get(x);
    if (!s) {
      s = this.op('Shape', [x]);
      this.shapeCache.set(x, s);
    }
    return s;
  }

  /** Shape(x)[start:end] as a 1-D int64 tensor. */
  shapeSlice(x: string, start: number, end?: number): string {
    const ends = end === undefined ? this.i64([Number.MAX_SAFE_INTEGER]) : this.i64([end]);
    return this.op('Slice', [this.shape(x), this.i64([start]), ends, this.i64([0])]);
  }

  /** Append everything emitted to a graph. */
  flushInto(graph: GraphProto): void {
    graph.node = [...(graph.node ?? []), ...this.nodes];
    graph.initializer = [...(graph.initializer ?? []), ...this.initializers];
    this.nodes.length = 0;
    this.initializers.length = 0;
  }
}
