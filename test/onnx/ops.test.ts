/**
 * The variadic emitters in src/onnx/ops.ts: a Split into more pieces, or a Sum of more terms, than one
 * node may bind (`MAX_NODE_TENSORS`, onnxruntime's WebGPU provider) becomes a tree of them. Each tree
 * runs in onnxruntime and is checked against the plain slices and sums it stands for.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/model.js';
import { MAX_NODE_TENSORS, split, sum } from '../../src/onnx/ops.js';
import { DT, type GraphProto, type ModelProto } from '../../src/onnx/proto.js';
import { OnnxRuntime } from '../../src/onnx/runtime.js';

const rt = new OnnxRuntime({ intraOpThreads: 1 });
afterAll(() => rt.close());

const vi = (name: string, dims: (number | string)[]) => ({
  name, type: { tensorType: { elemType: DT.FLOAT, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
});

function model(g: GraphProto, b: GraphBuilder, opset: number, outputs: string[]): ModelProto {
  g.node = [...(g.node ?? []), ...b.nodes];
  g.initializer = [...(g.initializer ?? []), ...b.initializers];
  g.output = outputs.map((o) => vi(o, ['N', 'M']));
  return { irVersion: 8, opsetImport: [{ domain: '', version: opset }], graph: g };
}

describe('split', () => {
  for (const opset of [11, 13]) {
    for (const n of [1, 14, 15, 16, 17, 29, 30, 31, 60, 250]) {
      it(`${n} pieces at opset ${opset}: every Split has at most ${MAX_NODE_TENSORS - 1} outputs, and the pieces are x's columns`, async () => {
        const sizes = Array.from({ length: n }, (_, k) => 1 + (k % 4));
        const total = sizes.reduce((a, c) => a + c, 0);
        const g: GraphProto = { name: 'split', input: [vi('x', [2, total])], node: [] };
        const b = new GraphBuilder(g, 't');
        const outs = sizes.map((_, k) => `piece${k}`);
        split(b, opset, 'x', sizes, 1, outs);
        const splits = b.nodes.filter((m) => m.opType === 'Split');
        expect(splits.length).toBe(b.nodes.length);
        for (const s of splits) expect(s.output!.length).toBeLessThanOrEqual(MAX_NODE_TENSORS - 1);
        if (n < MAX_NODE_TENSORS) expect(splits.length).toBe(1);
        const session = await rt.open(encodeModel(model(g, b, opset, outs)));
        const x = Float32Array.from({ length: 2 * total }, (_, i) => i);
        const res = await session.run({ x: { data: x, dims: [2, total] } });
        let at = 0;
        sizes.forEach((w, k) => {
          const want = [...x.slice(at, at + w), ...x.slice(total + at, total + at + w)];
          expect(res[`piece${k}`]!.dims).toEqual([2, w]);
          expect([...res[`piece${k}`]!.data as Float32Array]).toEqual(want);
          at += w;
        });
        await session.release();
      });
    }
  }
});

describe('sum', () => {
  for (const n of [1, 2, 15, 16, 40, 300]) {
    it(`${n} terms: every Sum has at most ${MAX_NODE_TENSORS - 1} inputs, and the result is their sum`, async () => {
      const names = Array.from({ length: n }, (_, k) => `t${k}`);
      const g: GraphProto = { name: 'sum', input: names.map((t) => vi(t, [1, 3])), node: [] };
      const b = new GraphBuilder(g, 't');
      const out = sum(b, names);
      for (const s of b.nodes) {
        expect(s.opType).toBe('Sum');
        expect(s.input!.length).toBeLessThanOrEqual(MAX_NODE_TENSORS - 1);
      }
      if (n === 1) {
        expect(out).toBe('t0');
        return;
      }
      const session = await rt.open(encodeModel(model(g, b, 13, [out])));
      const feeds = Object.fromEntries(names.map((t, k) => [t, { data: Float32Array.from([k, 2 * k, k % 7]), dims: [1, 3] }]));
      const res = await session.run(feeds);
      const want = [0, 1, 2].map((j) => names.reduce((a, _, k) => a + [k, 2 * k, k % 7][j]!, 0));
      expect([...res[out]!.data as Float32Array]).toEqual(want);
      await session.release();
    });
  }
});
