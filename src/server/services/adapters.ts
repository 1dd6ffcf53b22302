/**
 * Adapters: validating a creation request against the optimizer tables of src/kalman, the targets of
 * the base model (src/onnx selectTargets) and the training graph those targets need (the shared
 * engine, built here so that an adapter no graph can train is refused instead of stored), then
 * storing the resolved config. The tensors themselves are made by the training step (src/lora) on
 * first use, from `config.seed`.
 */
import { randomInt } from 'node:crypto';

import { InvalidConfigError, InvalidRankError, OutputNotFoundError } from '../../errors.js';
import { KalmanError, OPTIMIZER_DEFAULTS, OPTIMIZER_FAMILY, OPTIMIZER_TYPES, validateOptimizerConfig, type OptimizerType } from '../../kalman/index.js';
import { selectTargets, type LoraConfig } from '../../onnx/index.js';
import { BadRequestError, NotFoundError } from '../errors.js';
import { newId } from '../ids.js';
import type { AdapterConfig, AdapterRecord, Page, Repositories } from '../repositories/index.js';
import type { EngineCache } from './engines.js';
import type { ModelService } from './models.js';

export type Observation = AdapterConfig['observation'];

/** A creation request after schema validation (values not yet checked). */
export interface CreateAdapterInput {
  modelId: string;
  name?: string | undefined;
  targets: string[] | { regex: string } | 'all';
  rank: number;
  alpha?: number | undefined;
  rslora?: boolean | undefined;
  optimizer: { type: string } & Record<string, unknown>;
  observation?: Observation | undefined;
  output?: string | undefined;
  seed?: number | undefined;
}

export class AdapterService {
  constructor(
    private readonly repos: Repositories,
    private readonly models: ModelService,
    private readonly engines: EngineCache,
  ) {}

  /**
   * Validates and stores a new adapter of `ownerId`. Checked in this order, each with its own code:
   * rank (LORA_INVALID_RANK), alpha (INVALID_CONFIG), optimizer (OPTIMIZER_UNKNOWN_TYPE /
   * OPTIMIZER_CONFIG), model (MODEL_NOT_FOUND), output (MODEL_OUTPUT_NOT_FOUND; default the model's
   * first), targets (LORA_TARGET_NOT_FOUND), then the engine of
   * the model and targets, which builds the gradient graph: an op it cannot differentiate between the
   * targets and the output (ONNX_UNSUPPORTED_OP), an output the task cannot use (MODEL_UNSUPPORTED);
   * last the cost of a Kalman step that observes every output (OPTIMIZER_CONFIG, see checkKalmanCost).
   * Nothing is stored on failure. The engine is cached, so the adapter's first step does not build it again.
   */
  async create(ownerId: string, input: CreateAdapterInput): Promise<AdapterRecord> {
    if (!Number.isInteger(input.rank) || input.rank <= 0) throw new InvalidRankError(input.rank);
    const alpha = input.alpha ?? input.rank;
    if (!(Number.isFinite(alpha) && alpha > 0)) throw new InvalidConfigError(`alpha must be a positive finite number, got ${alpha}`, { field: 'alpha', alpha });
    const { optimizer, observation } = resolveOptimizer(input.optimizer, input.observation);
    const model = await this.models.get(input.modelId);
    const outputs = model.outputs.map((o) => o.name);
    const output = input.output ?? outputs[0]!;
    if (!outputs.includes(output)) throw new OutputNotFoundError(output, outputs);
    const lora: LoraConfig = { targets: input.targets, rank: input.rank, alpha, rslora: input.rslora ?? false };
    const sites = selectTargets(await this.models.proto(model), lora).map((t) => ({ module: t.module, in: t.in, out: t.out }));
    const config: AdapterConfig = {
      targets: input.targets,
      sites,
      rank: input.rank,
      alpha,
      rslora: input.rslora ?? false,
      optimizer,
      observation,
      output,
      seed: input.seed ?? randomInt(0, 2 ** 31 - 1),
      modelSha256: model.sha256,
    };
    const engine = await this.engines.engine(model, config);
    checkKalmanCost(optimizer.type, observation, engine.m, engine.layout.n);
    return this.repos.adapters.create({ id: newId('adp'), ownerId, modelId: model.id, name: input.name ?? null, config });
  }

  /** The adapter of `ownerId`, else ADAPTER_NOT_FOUND (also for another user's adapter). */
  async get(id: string, ownerId: string): Promise<AdapterRecord> {
    const a = await this.repos.adapters.get(id, ownerId);
    if (!a) throw new NotFoundError('adapter', id);
    return a;
  }

  list(ownerId: string, opts: { limit: number; cursor?: string; modelId?: string }): Promise<Page<AdapterRecord>> {
    return this.repos.adapters.list(ownerId, opts);
  }

  async delete(id: string, ownerId: string): Promise<void> {
    if (!(await this.repos.adapters.delete(id, ownerId))) throw new NotFoundError('adapter', id);
  }
}

/** A Kalman step's work per sample, n·m² (S = H·diag(p)·Hᵀ and the update), above which an adapter is refused. */
export const KALMAN_MAX_WORK = 1e10;
/** Floats of one sample's Jacobian H (m × n) above which a Kalman adapter is refused (256 MB). */
export const KALMAN_MAX_JACOBIAN = 64 * 1024 * 1024;

/**
 * A Kalman optimizer observing the m model outputs (`probs`, `regression`) costs ~n·m² operations and
 * an m × n Jacobian per sample: digits-mlp (m = 10, n = 4 712) 1.5 ms a step; a 1 000-class head on the
 * same n would take tens of seconds a sample. Refused with OPTIMIZER_CONFIG past the limits above, with
 * the way out (the `loss` observation has m = 1).
 */
function checkKalmanCost(type: string, observation: Observation, m: number, n: number): void {
  if (OPTIMIZER_FAMILY[type as OptimizerType] !== 'kalman' || observation === 'loss') return;
  const work = n * m * m;
  const floats = n * m;
  if (work <= KALMAN_MAX_WORK && floats <= KALMAN_MAX_JACOBIAN) return;
  throw new BadRequestError(
    'OPTIMIZER_CONFIG',
    `${type} with observation '${observation}' would cost ~${work.toExponential(1)} operations and a ${((floats * 4) / 2 ** 20).toFixed(0)} MB Jacobian per sample here (m = ${m} outputs, n = ${n} adapter parameters; limits ${KALMAN_MAX_WORK.toExponential(0)} and ${(KALMAN_MAX_JACOBIAN * 4) / 2 ** 20} MB): use observation 'loss' (m = 1), or fewer targets or a lower rank`,
    { field: 'observation', m, n },
  );
}

/** Number of trainable parameters: r·(in + out) per site. */
export function parameterCount(config: AdapterConfig): number {
  return config.sites.reduce((n, s) => n + config.rank * (s.in + s.out), 0);
}

/**
 * The optimizer config with defaults (src/kalman validateOptimizerConfig) and the observation model.
 * Kalman optimizers carry the observation model in their config; the top-level `observation` fills it
 * in, and the two must agree when both are given.
 */
function resolveOptimizer(
  requested: { type: string } & Record<string, unknown>,
  observation: Observation | undefined,
): { optimizer: AdapterConfig['optimizer']; observation: Observation } {
  const type = requested.type;
  if (!(OPTIMIZER_TYPES as readonly string[]).includes(type)) {
    throw new BadRequestError('OPTIMIZER_UNKNOWN_TYPE', `optimizer.type must be one of ${OPTIMIZER_TYPES.join(', ')}; got '${type}'`, {
      field: 'optimizer.type',
      value: type,
      allowed: [...OPTIMIZER_TYPES],
    });
  }
  const kalman = OPTIMIZER_FAMILY[type as OptimizerType] === 'kalman';
  const input: Record<string, unknown> = { ...requested };
  // A Kalman optimizer's observation defaults to src/kalman's (chosen by bench/online); others only use it for the task.
  let obs: Observation = observation ?? (kalman ? (OPTIMIZER_DEFAULTS[type as 'loko'].observation as Observation) : 'probs');
  if (kalman) {
    const inner = requested['observation'];
    if (inner !== undefined && observation !== undefined && inner !== observation) {
      throw new InvalidConfigError(`observation '${observation}' and optimizer.observation '${String(inner)}' disagree; give one`, { field: 'observation' });
    }
    if (inner !== undefined) obs = inner as Observation;
    input['observation'] = obs;
  }
  try {
    const optimizer = validateOptimizerConfig(input) as unknown as AdapterConfig['optimizer'];
    return { optimizer, observation: kalman ? (optimizer['observation'] as Observation) : obs };
  } catch (err) {
    if (err instanceof KalmanError) {
      // Field names as the client wrote them: `optimizer.lr`, not `lr`.
      const field = typeof err.details?.['field'] === 'string' ? `optimizer.${err.details['field']}` : 'optimizer';
      throw new BadRequestError(err.code, err.message, { ...err.details, field });
    }
    throw err;
  }
}
