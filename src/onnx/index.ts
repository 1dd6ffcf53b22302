/** Public surface of src/onnx: model I/O, inspection, LoRA injection, gradient graphs, the runtime. */
export { decodeModel, encodeModel, cloneModel, forEachRead, loadModelFile, loadModelBytes, inspectModel, realInputs, sha256, ConstantTable } from './model.js';
export type { ModelInfo, ValueSignature } from './model.js';
export { listTargets, selectTargets, injectLora, loraScale } from './lora-inject.js';
export type { TargetInfo, TargetForm, LoraConfig, InjectedSite } from './lora-inject.js';
export { buildGradients } from './autodiff.js';
export type { GradientRequest, GradientMap } from './autodiff.js';
export { buildGradientModel } from './gradient-model.js';
export type { GradientModelSpec } from './gradient-model.js';
export { buildTrainingGraph, trainingGraphKey, clearTrainingGraphCache, siteResult, thetaFeed, labelFeed } from './training-graph.js';
export type { TrainingGraph, TrainingGraphSpec, SiteOutputs, LossKind, ObservationKind, EmitKind, BuildOptions } from './training-graph.js';
export { GRAPH_CACHE_MAX_BYTES, pruneGraphCache } from './graph-cache.js';
export { probeShapes, probeFeeds } from './shapes.js';
export type { ShapeInfo, TensorShape } from './shapes.js';
export { OnnxRuntime, Session, ortVersion, MALLOC_TUNABLES, mallocHint } from './runtime.js';
export type { RuntimeOptions, ExecutionProvider, ActiveProvider, Tensor } from './runtime.js';
export { RULES, NON_DIFFERENTIABLE } from './gradients/index.js';
export { DT, dtypeName, tensorToValue, valueToTensor, floatTensor, int64Tensor, onnx } from './proto.js';
export type { ModelProto, GraphProto, NodeProto, TensorProto, NumericArray } from './proto.js';
