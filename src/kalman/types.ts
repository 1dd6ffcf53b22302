/**
 * The data types of src/kalman: optimizer configs, the parameter layout, the per-sample batch
 * records a caller feeds to `step`, optimizer states, step metrics and the serialized form.
 * Everything is plain data and typed arrays; no behaviour lives here.
 */

/** The optimizers. */
export type OptimizerType = 'loko' | 'r-kalman' | 'ring' | 'reng' | 'kfac' | 'sgd' | 'adamw' | 'adagrad';

/** How an optimizer uses the batch: Kalman filters, K-FAC preconditioning, or first-order. */
export type OptimizerFamily = 'kalman' | 'kfac' | 'first-order';

/**
 * The Kalman observation model. `probs`: h = softmax probabilities, y = one-hot (m = classes).
 * `loss`: h = the per-sample loss, y = 0, H = its gradient (m = 1). `regression`: h = the output
 * vector, y = the target.
 */
export type ObservationModel = 'probs' | 'loss' | 'regression';

/**
 * The Kalman observation-noise estimator. `ema`: R ← β·R + (1−β)·(ε·εᵀ + H·diag(p)·Hᵀ).
 * `categorical` (`probs` only): R = diag(h) − h·hᵀ + r₀·I from the current prediction.
 */
export type NoiseModel = 'ema' | 'categorical';

/** LoKO: the diagonal-covariance extended Kalman filter of DESIGN 4. */
export interface LokoConfig {
  type: 'loko';
  /** Observation model; default `probs`. */
  observation: ObservationModel;
  /** Noise model (resolved: `auto` in the input becomes `categorical` for `probs`, else `ema`). */
  noise: NoiseModel;
  /** Lower end of the uniform draw of p₀; default 0.01. */
  p0Low: number;
  /** Upper end of the uniform draw of p₀; default 0.1. */
  p0High: number;
  /** R₀ = r₀·I, and the ridge of the categorical R; default 0.01. */
  r0: number;
  /** EMA factor β of the `ema` noise estimate (β = 1 keeps R = R₀); default 0.95. */
  beta: number;
  /** Forgetting factor λ: p ← p/λ before each sample; default 1. */
  forgetting: number;
  /** Additive process noise q: p ← p/λ + q; default 0. */
  processNoise: number;
  /** Floor of p after each update; default 1e-10. */
  pFloor: number;
  /** Added as (1−β)·rMin·I to each `ema` update so R stays ⪰ min(r₀, rMin)·I; default 1e-6. */
  rMin: number;
}

/** R-Kalman (GRNG, Bayesian): LoKO plus p ← 1/(1/p + ρ‖g‖²) after each update. */
export interface RKalmanConfig extends Omit<LokoConfig, 'type'> {
  type: 'r-kalman';
  /** Gradient-regulariser weight ρ (0 ⇒ exactly LoKO); default 0.01. */
  rho: number;
}

/** K-FAC per LoRA matrix with Newton–Schulz inverses of the damped Kronecker factors. */
export interface KfacConfig {
  type: 'kfac';
  /** Step size; default 0.01. */
  lr: number;
  /** Tikhonov damping λ₀, split between the factors by π (Martens & Grosse 2015); default 1e-3. */
  damping: number;
  /** EMA decay of the Kronecker factors (the first step takes the batch's factors); default 0.95. */
  factorDecay: number;
  /** Recompute the factor inverses every this many steps; default 1. */
  inverseEvery: number;
  /** Most Newton–Schulz iterations per inverse; default 50. */
  nsMaxIter: number;
  /** Newton–Schulz stopping tolerance on ‖I − M·X‖_F; default 1e-6. */
  nsTol: number;
  /** A factor of larger dimension is kept diagonal (elementwise inverse, no Newton–Schulz); default 512. */
  maxFactorDim: number;
}

/** RING (GRNG, implicit): K-FAC with adaptive damping λ₀ + ρ‖ḡ‖². */
export interface RingConfig extends Omit<KfacConfig, 'type'> {
  type: 'ring';
  /** Gradient-regulariser weight ρ (0 ⇒ exactly K-FAC); default 0.01. */
  rho: number;
}

/** RENG (GRNG, explicit): the K-FAC preconditioner applied to ḡ + ρ·H_ℓ·ḡ (HVP by finite difference). */
export interface RengConfig extends Omit<KfacConfig, 'type'> {
  type: 'reng';
  /** Gradient-regulariser weight ρ; default 0.01. */
  rho: number;
  /** Finite-difference step ε along the unit direction ḡ/‖ḡ‖; default 1e-3. */
  hvpEps: number;
}

/** SGD with (heavy-ball or Nesterov) momentum and L2 weight decay (PyTorch semantics). */
export interface SgdConfig {
  type: 'sgd';
  /** Learning rate; default 0.01. */
  lr: number;
  /** Momentum μ; default 0.9. */
  momentum: number;
  /** Nesterov momentum; default false. */
  nesterov: boolean;
  /** L2 weight decay added to the gradient; default 0. */
  weightDecay: number;
}

/** AdamW: Adam with bias correction and decoupled weight decay (PyTorch semantics). */
export interface AdamWConfig {
  type: 'adamw';
  /** Learning rate; default 1e-3. */
  lr: number;
  /** First-moment decay β₁; default 0.9. */
  beta1: number;
  /** Second-moment decay β₂; default 0.999. */
  beta2: number;
  /** ε added to √v̂; default 1e-8. */
  eps: number;
  /** Decoupled weight decay: θ ← θ·(1 − lr·wd); default 0.01. */
  weightDecay: number;
}

/** AdaGrad (PyTorch semantics). */
export interface AdaGradConfig {
  type: 'adagrad';
  /** Learning rate; default 0.01. */
  lr: number;
  /** ε added to √Σg²; default 1e-10. */
  eps: number;
  /** Initial value of the accumulator Σg²; default 0. */
  initialAccumulator: number;
  /** Learning-rate decay: lr/(1 + (t−1)·lrDecay); default 0. */
  lrDecay: number;
  /** L2 weight decay added to the gradient; default 0. */
  weightDecay: number;
}

/** A validated optimizer config with every default filled in. */
export type OptimizerConfig =
  | LokoConfig
  | RKalmanConfig
  | KfacConfig
  | RingConfig
  | RengConfig
  | SgdConfig
  | AdamWConfig
  | AdaGradConfig;

/** The resolved config of one optimizer type. */
export type ConfigOf<T extends OptimizerType> = Extract<OptimizerConfig, { type: T }>;

type InputOf<C> = C extends { noise: NoiseModel } ? Omit<C, 'noise'> & { noise: NoiseModel | 'auto' } : C;

/** What a caller may pass: the type plus any subset of its hyperparameters (`noise` may be `auto`). */
export type OptimizerConfigInput = {
  [T in OptimizerType]: { type: T } & Partial<Omit<InputOf<ConfigOf<T>>, 'type'>>;
}[OptimizerType];

/** One LoRA matrix inside θ: a row-major [rows, cols] matrix at θ[offset, offset + rows·cols). */
export interface ParamBlock {
  /** E.g. `fc1.lora_A` ([r, in]) or `fc1.lora_B` ([out, r]). */
  name: string;
  rows: number;
  cols: number;
  offset: number;
}

/** θ ∈ Rⁿ is all LoRA matrices concatenated; `blocks` say where each one lies. */
export interface ParamLayout {
  n: number;
  blocks: ParamBlock[];
}

/**
 * A per-sample quantity an optimizer needs; the caller builds the ONNX graph that yields it.
 * - `loss`: the per-sample loss value (`SampleRecord.loss`);
 * - `grad`: the per-sample loss gradient dℓ/dθ (`SampleRecord.grad`, length n);
 * - `jacobian`: the observation's Jacobian, prediction and target (`H` m×n, `h` m, `y` m);
 * - `factors`: per LoRA matrix, input activations and output gradients (`SampleRecord.factors`);
 * - `hvp`: the loss gradient at the perturbed θ from `hvpPoint` (`SampleRecord.gradPerturbed`).
 */
export type Need = 'loss' | 'grad' | 'jacobian' | 'factors' | 'hvp';

/** Float arrays accepted in a batch (Float32Array from ONNX Runtime, Float64Array from tests/bench). */
export type FloatArray = Float32Array | Float64Array;

/**
 * Kronecker factors of one LoRA matrix W [rows, cols] for one sample over its T tokens (T = 1 for a
 * plain MLP): `a` the inputs [T, cols] and `g` the loss gradients w.r.t. the outputs [T, rows], both
 * row-major. The sample's gradient of W is Σ_t g_t·a_tᵀ.
 */
export interface BlockFactors {
  a: FloatArray;
  g: FloatArray;
  /**
   * Optional output gradients for the curvature only [T, rows], e.g. with labels sampled from the
   * model's predictive distribution (the "true Fisher"). Without it G is the empirical Fisher
   * E[g·gᵀ] of `g`, which shrinks with the residual: on near-noiseless regression that makes the
   * preconditioned step blow up as the fit improves (Kunstner et al. 2019), so lower lr there.
   */
  gFisher?: FloatArray;
}

/** One sample of a batch; which fields are required is what the optimizer's `needs` says. */
export interface SampleRecord {
  /** The per-sample loss (need `loss`). */
  loss?: number;
  /** The per-sample loss gradient dℓ/dθ, length n (need `grad`). */
  grad?: FloatArray;
  /** Jacobian of the observation at the batch's starting θ, m×n row-major (need `jacobian`). */
  H?: FloatArray;
  /** The prediction h(x; θ) at the batch's starting θ, length m (need `jacobian`). */
  h?: FloatArray;
  /** The target y, length m (need `jacobian`). */
  y?: FloatArray;
  /** Per block name, that LoRA matrix's factors (need `factors`). */
  factors?: Record<string, BlockFactors>;
  /** dℓ/dθ at `hvpPoint(state, batch).theta`, length n (need `hvp`). */
  gradPerturbed?: FloatArray;
}

interface StateBase {
  /** The validated config the state was created (or reconfigured) with. */
  readonly config: OptimizerConfig;
  readonly layout: ParamLayout;
  /** Accepted `step` calls. */
  readonly step: number;
  /** Samples in the accepted steps. */
  readonly samples: number;
  /** θ (float64, length n). */
  readonly theta: Float64Array;
  /** The PRNG state (xoshiro128**, four uint32 words). */
  readonly rng: Uint32Array;
}

/** State of LoKO and R-Kalman. */
export interface KalmanState extends StateBase {
  readonly type: 'loko' | 'r-kalman';
  readonly config: LokoConfig | RKalmanConfig;
  /** The covariance diagonal p (float64, length n). */
  readonly p: Float64Array;
  /** Observation dimension; 0 until the first step fixes it (1 from the start for `loss`). */
  readonly m: number;
  /** The observation-noise covariance R (float64, m×m row-major); the last one used for `categorical`. */
  readonly R: Float64Array;
}

/**
 * Per LoRA matrix state of the K-FAC family (all float64, row-major). A factor whose dimension
 * exceeds `maxFactorDim` is stored as its diagonal only (length cols or rows, inverse elementwise).
 */
export interface KfacBlockState {
  /** EMA of the input second moment E[a·aᵀ] (cols×cols, or its diagonal). */
  readonly A: Float64Array;
  /** EMA of the output-gradient second moment E[g·gᵀ] (rows×rows, or its diagonal). */
  readonly G: Float64Array;
  /** Newton–Schulz inverse of the damped A (cols×cols, or the elementwise inverse of the diagonal). */
  readonly Ainv: Float64Array;
  /** Newton–Schulz inverse of the damped G (rows×rows, or the elementwise inverse of the diagonal). */
  readonly Ginv: Float64Array;
}

/** State of K-FAC, RING and RENG. */
export interface KfacState extends StateBase {
  readonly type: 'kfac' | 'ring' | 'reng';
  readonly config: KfacConfig | RingConfig | RengConfig;
  /** One entry per layout block, in layout order. */
  readonly blocks: KfacBlockState[];
}

/** State of SGD. */
export interface SgdState extends StateBase {
  readonly type: 'sgd';
  readonly config: SgdConfig;
  /** The momentum buffer (float64, length n). */
  readonly velocity: Float64Array;
}

/** State of AdamW (the bias-correction count is `step`). */
export interface AdamWState extends StateBase {
  readonly type: 'adamw';
  readonly config: AdamWConfig;
  /** First moment m (float64, length n). */
  readonly expAvg: Float64Array;
  /** Second moment v (float64, length n). */
  readonly expAvgSq: Float64Array;
}

/** State of AdaGrad. */
export interface AdaGradState extends StateBase {
  readonly type: 'adagrad';
  readonly config: AdaGradConfig;
  /** Σg² (float64, length n). */
  readonly sum: Float64Array;
}

/** Any optimizer state. States are immutable: `step` returns a new one. */
export type OptimizerState = KalmanState | KfacState | SgdState | AdamWState | AdaGradState;

/** Kalman metrics of one step; every per-sample entry is taken before that sample's update. */
export interface KalmanStepMetrics {
  /** diag(H·diag(p)·Hᵀ + R) per sample (length m each), with p after forgetting. */
  predictiveVariance: Float64Array[];
  /** The prior residual e = y − h per sample (h linearised to the current θ within a batch). */
  residual: Float64Array[];
  /** ‖e‖₂ per sample. */
  innovationNorm: Float64Array;
  /** The normalised innovation squared eᵀ·S⁻¹·e per sample (≈ m on average when the filter is calibrated). */
  nis: Float64Array;
  /** min, mean and max of p after the step. */
  pMin: number;
  pMean: number;
  pMax: number;
}

/** K-FAC family metrics of one step. */
export interface KfacStepMetrics {
  /** The damping used (λ₀, plus ρ‖ḡ‖² for RING). */
  damping: number;
  /** Whether the factor inverses were recomputed this step. */
  inverted: boolean;
  /** Largest Newton–Schulz residual ‖I − M·X‖_F over the inverses computed this step (0 if none). */
  nsResidual: number;
  /** Total Newton–Schulz iterations this step. */
  nsIterations: number;
  /** ‖H_ℓ·ḡ‖₂ estimated by finite differences (RENG only). */
  hvpNorm?: number;
}

/** Metrics of one accepted step. */
export interface StepMetrics {
  /** The new state's step count. */
  step: number;
  batchSize: number;
  /** Mean of the samples' `loss` fields where given. */
  loss?: number;
  /** ‖θ_new − θ_old‖₂. */
  updateNorm: number;
  /** ‖ḡ‖₂ of the batch-mean gradient (first-order and K-FAC family). */
  gradNorm?: number;
  kalman?: KalmanStepMetrics;
  kfac?: KfacStepMetrics;
}

/** What `step` returns: a new state (the input is never mutated) and metrics. */
export interface StepResult<S extends OptimizerState = OptimizerState> {
  state: S;
  metrics: StepMetrics;
}

/** Where RENG wants the second gradient: θ + ε·v, with v = ḡ/‖ḡ‖ (v = 0 when ḡ = 0). */
export interface HvpPoint {
  /** The perturbed θ (float64, length n); feed it to the gradient graph (as float32). */
  theta: Float64Array;
  epsilon: number;
  /** The unit direction v (float64, length n). */
  direction: Float64Array;
}

/** dtypes of serialized tensors. */
export type TensorDtype = 'float64' | 'float32' | 'int32';

/** One serialized tensor: dtype, shape and a typed array holding exactly prod(shape) values. */
export interface SerializedTensor {
  dtype: TensorDtype;
  shape: number[];
  data: Float64Array | Float32Array | Int32Array;
}

/**
 * An optimizer state as named tensors plus flat metadata (safetensors-ready: src/lora writes
 * `tensors` as tensors and `meta` as `__metadata__`, stringifying values). `deserializeState`
 * accepts meta values as numbers or as their string forms.
 */
export interface SerializedState {
  tensors: Record<string, SerializedTensor>;
  meta: Record<string, string | number | boolean>;
}
