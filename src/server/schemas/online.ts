/** Online adaptation: predict, observe, the NDJSON stream, state and downloads. */
import { z } from 'zod';

import { DOWNLOAD_FORMATS } from '../services/online.js';

const InputsField = z
  .unknown()
  .describe('{name: value} (or the bare value for a one-input model); a value is nested number arrays with a leading batch axis, {data: base64 little-endian float32, shape}, or text for a model with a built-in tokenizer');

export const PredictBody = z.object({ inputs: InputsField });

export const ObserveBody = z.object({
  inputs: InputsField,
  labels: z.unknown().describe('class ids [B] (classification) or float targets [B][m] (regression)'),
});

const Matrix = z.array(z.array(z.number()));

export const PredictResponse = z.object({
  step: z.number().int().describe('the adapter step the prediction was made at'),
  outputs: Matrix.describe('model outputs [B][m]'),
  probs: Matrix.optional().describe('classification: softmax [B][m]'),
  predicted: z.array(z.number().int()).optional().describe('classification: predicted class per sample'),
  variance: Matrix.optional().describe('Kalman optimizers: diag(H·diag(p)·Hᵀ + R) per sample'),
});

export const ObserveResponse = z.object({
  step: z.number().int().describe("the adapter's step after this update; durable when this response is sent"),
  prediction: Matrix.describe('outputs before the update [B][m] (prequential)'),
  probs: Matrix.optional(),
  predicted: z.array(z.number().int()).optional(),
  loss: z.array(z.number()).describe('per-sample loss before the update'),
  variance: Matrix.optional().describe('Kalman optimizers: predictive variance before the update'),
});

export const StateResponse = z.object({
  adapterId: z.string(),
  optimizer: z.string(),
  step: z.number().int(),
  R: Matrix.nullable().describe('observation-noise covariance (m×m), Kalman optimizers'),
  p: z.object({ min: z.number(), mean: z.number(), max: z.number() }).nullable().describe('summary of the covariance diagonal, Kalman optimizers'),
  metrics: z.object({
    window: z.number().int(),
    n: z.number().int(),
    accuracy: z.number().nullable().describe('prequential accuracy over the last n samples'),
    loss: z.number().nullable().describe('mean prequential loss over the last n samples'),
  }),
  snapshotStep: z.number().int(),
});

export const DownloadQuery = z.object({
  format: z.enum(DOWNLOAD_FORMATS),
  step: z.coerce.number().int().min(0).optional().describe('a checkpoint step; default the current state'),
});
