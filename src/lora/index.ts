/** Public surface of src/lora: adapters as data, exports, merge, the engine and the training step. */
export { mergeAdapters } from './merge.js';
export type { AdapterMatrices } from './merge.js';
export { thetaLayout, initTheta, thetaToMatrices, matricesToTheta } from './adapter.js';
export type { SiteShape, ThetaBlock, ThetaLayout } from './adapter.js';
export { encodeSafetensors, decodeSafetensors } from './safetensors.js';
export type { SafeTensor, SafeDtype } from './safetensors.js';
export { exportPeft, readPeft, peftConfig, exportMergedOnnx, exportInferenceBundle, readInferenceBundle, exportState, importState } from './export.js';
export type { ExportSubject } from './export.js';
export { AdapterEngine, firstNonFinite } from './engine.js';
export type { Task, EngineOptions, Labels, GradientRun, JacobianRun, FactorRun } from './engine.js';
export { trainStep, predict, softmaxRows } from './train-step.js';
export type { Batch, StepOutcome, Prediction } from './train-step.js';
