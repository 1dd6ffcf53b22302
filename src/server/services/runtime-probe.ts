/**
 * Readiness of ONNX Runtime: a one-node Identity graph, opened once through the shared runtime and
 * run on every /readyz, so "ready" means a session can really run here.
 */
import { DT, encodeModel, type OnnxRuntime } from '../../onnx/index.js';

let probeBytes: Uint8Array | null = null;

function probeModel(): Uint8Array {
  probeBytes ??= encodeModel({
    irVersion: 8,
    producerName: 'onnx-lora-kalman readiness probe',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'probe',
      node: [{ opType: 'Identity', input: ['x'], output: ['y'], name: 'identity' }],
      input: [{ name: 'x', type: { tensorType: { elemType: DT.FLOAT, shape: { dim: [{ dimValue: 1 }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: DT.FLOAT, shape: { dim: [{ dimValue: 1 }] } } } }],
    },
  });
  return probeBytes;
}

/** Runs the probe graph; throws when the runtime cannot. */
export async function probeRuntime(runtime: OnnxRuntime): Promise<void> {
  const session = await runtime.session(probeModel(), 'readiness-probe');
  const out = await session.run({ x: { data: new Float32Array([1]), dims: [1] } });
  if (out['y']?.data[0] !== 1) throw new Error('the probe graph returned a wrong value');
}
