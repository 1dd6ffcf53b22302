/**
 * Measures the built-in models with onnxruntime-node and writes the results into models/manifest.json:
 * held-out accuracy on the fixed source-domain slice, accuracy on the shifted streams, and the drop.
 *
 * Run:  npm run models:eval                       (every model in the manifest)
 *       npm run models:eval -- --only=digits-cnn   (one model; repeatable)
 *
 * Digits: held-out = digitSamples('heldout'); shifted = the same digits under the styles of users
 * 0..7 (digitStream({user, seed: 0, split: 'heldout'})), accuracy averaged over the users.
 * Mail: held-out = sourceMail('heldout'); shifted = mailStream({seed: 0}) (hard ham + spam-2).
 * A script, not library code, so it may import the runtime directly.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import * as ort from 'onnxruntime-node';

import {
  DEFAULT_MODELS_DIR,
  DIGIT_PIXELS,
  digitSamples,
  digitStream,
  loadBuiltinModels,
  mailStream,
  sourceMail,
  userStyle,
  type BuiltinModel,
  type Manifest,
  type ManifestModel,
  type Tokenizer,
} from '../src/data/index.js';

/** Users whose styled held-out digits make up the digits' shifted metric. */
export const SHIFT_USERS = [0, 1, 2, 3, 4, 5, 6, 7];
const MAIL_BATCH = 64;

interface Counted {
  correct: number;
  n: number;
}

function argmaxCount(logits: Float32Array, classes: number, labels: ArrayLike<number>): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) {
      if ((logits[i * classes + c] as number) > (logits[i * classes + best] as number)) best = c;
    }
    if (best === labels[i]) correct++;
  }
  return correct;
}

async function runDigits(session: ort.InferenceSession, entry: ManifestModel, images: Float32Array, labels: ArrayLike<number>): Promise<Counted> {
  const n = labels.length;
  const dims = entry.inputs[0]?.shape.length === 4 ? [n, 1, 28, 28] : [n, DIGIT_PIXELS];
  const out = await session.run({ [entry.inputs[0]!.name]: new ort.Tensor('float32', images, dims) });
  const logits = out[entry.output.name]!.data as Float32Array;
  return { correct: argmaxCount(logits, entry.labels.length, labels), n };
}

async function runMail(session: ort.InferenceSession, entry: ManifestModel, tokenizer: Tokenizer, texts: string[], labels: number[]): Promise<Counted> {
  let correct = 0;
  for (let s = 0; s < texts.length; s += MAIL_BATCH) {
    const { ids, dims } = tokenizer.encodeBatch(texts.slice(s, s + MAIL_BATCH));
    const out = await session.run({ [entry.inputs[0]!.name]: new ort.Tensor('int64', ids, dims) });
    correct += argmaxCount(out[entry.output.name]!.data as Float32Array, entry.labels.length, labels.slice(s, s + MAIL_BATCH));
  }
  return { correct, n: texts.length };
}

const frac = (c: Counted): number => c.correct / c.n;
const round = (x: number): number => Math.round(x * 1e6) / 1e6;

/** Computes the metrics of one verified built-in model (does not write anything). */
export async function evaluateModel(model: BuiltinModel): Promise<ManifestModel['metrics']> {
  const entry = model.entry;
  const session = await ort.InferenceSession.create(model.bytes);
  try {
    if (entry.task === 'image-classification') {
      const held = digitSamples('heldout');
      const heldout = await runDigits(session, entry, held.images, held.labels);
      const perUser = [];
      for (const user of SHIFT_USERS) {
        const samples = [...digitStream({ user, seed: 0, split: 'heldout' })];
        const images = new Float32Array(samples.length * DIGIT_PIXELS);
        samples.forEach((s, i) => images.set(s.image, i * DIGIT_PIXELS));
        const r = await runDigits(session, entry, images, samples.map((s) => s.label));
        const style = userStyle(user);
        perUser.push({ user, style, accuracy: round(frac(r)), correct: r.correct, n: r.n });
      }
      const shiftedAcc = perUser.reduce((a, u) => a + u.accuracy, 0) / perUser.length;
      return {
        heldout: { ...entry.metrics.heldout, accuracy: round(frac(heldout)), correct: heldout.correct, n: heldout.n },
        shifted: {
          accuracy: round(shiftedAcc),
          n: perUser.reduce((a, u) => a + u.n, 0),
          slice: `mean over users ${SHIFT_USERS[0]}..${SHIFT_USERS[SHIFT_USERS.length - 1]} of the accuracy on digitStream({user, seed: 0, split: 'heldout'}): the held-out digits under each user's style`,
          perUser,
        },
        drop: round(frac(heldout) - shiftedAcc),
      };
    }
    if (entry.task === 'text-classification') {
      const tokenizer = model.tokenizer;
      if (!tokenizer) throw new Error(`${entry.name}: text model without a tokenizer`);
      const held = sourceMail('heldout');
      const heldout = await runMail(session, entry, tokenizer, held.map((m) => m.text), held.map((m) => m.label));
      const stream = [...mailStream({ seed: 0 })];
      const shifted = await runMail(session, entry, tokenizer, stream.map((m) => m.text), stream.map((m) => m.label));
      const perGroup: Record<string, { accuracy: number; correct: number; n: number }> = {};
      for (const group of [...new Set(stream.map((m) => m.group))].sort()) {
        const part = stream.filter((m) => m.group === group);
        const r = await runMail(session, entry, tokenizer, part.map((m) => m.text), part.map((m) => m.label));
        perGroup[group] = { accuracy: round(frac(r)), correct: r.correct, n: r.n };
      }
      return {
        heldout: { ...entry.metrics.heldout, accuracy: round(frac(heldout)), correct: heldout.correct, n: heldout.n },
        shifted: {
          accuracy: round(frac(shifted)),
          correct: shifted.correct,
          n: shifted.n,
          slice: "mailStream({seed: 0}): every mail of hard-ham-1 (ham) and spam-2 (spam), never seen in pretraining",
          perGroup,
        },
        drop: round(frac(heldout) - frac(shifted)),
      };
    }
    throw new Error(`${entry.name}: unknown task '${entry.task}'`);
  } finally {
    await session.release();
  }
}

const pct = (x: number | null | undefined): string => (typeof x === 'number' ? `${(100 * x).toFixed(1)}%` : 'n/a');

/** The README table of models/README.md, from the manifest. */
export function metricsTable(manifest: Manifest): string {
  const rows = manifest.models.map((m) => {
    const input = m.inputs.map((i) => `\`${i.name}\` ${i.dtype} [${i.shape.join(', ')}]`).join(', ');
    const drop = typeof m.metrics.drop === 'number' ? `${(100 * m.metrics.drop).toFixed(1)}` : 'n/a';
    const kb = `${Math.round(m.size / 1024)} KB`;
    return `| \`${m.name}\` | ${m.description ?? m.task} | ${input} | ${pct(m.metrics.heldout.accuracy)} (n=${m.metrics.heldout.n}) | ${pct(m.metrics.shifted?.accuracy)} | ${drop} | ${kb} | \`${m.rebuild}\` |`;
  });
  return [
    '| model | architecture | input | held-out acc. | shifted acc. | drop (points) | size | rebuild |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

const README = join(DEFAULT_MODELS_DIR, 'README.md');
const BEGIN = '<!-- metrics:begin -->';
const END = '<!-- metrics:end -->';

function updateReadme(manifest: Manifest): void {
  const text = readFileSync(README, 'utf8');
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) {
    console.warn(`${README}: no ${BEGIN} ... ${END} markers, table not updated`);
    return;
  }
  writeFileSync(README, `${text.slice(0, a + BEGIN.length)}\n${metricsTable(manifest)}\n${text.slice(b)}`);
  console.log(`updated the table in ${README}`);
}

async function main(): Promise<void> {
  const only = process.argv.slice(2).flatMap((a) => (a.startsWith('--only=') ? [a.slice('--only='.length)] : []));
  const { manifest, models, problems } = loadBuiltinModels(DEFAULT_MODELS_DIR);
  if (problems.length > 0) {
    for (const p of problems) console.error(`${p.code}: ${p.message}`);
    process.exitCode = 1;
    return;
  }
  for (const model of models) {
    if (only.length > 0 && !only.includes(model.name)) continue;
    const t0 = Date.now();
    const metrics = await evaluateModel(model);
    model.entry.metrics = metrics;
    const shifted = metrics.shifted?.accuracy ?? NaN;
    console.log(
      `${model.name}: held-out ${(100 * (metrics.heldout.accuracy ?? NaN)).toFixed(2)}% (n=${metrics.heldout.n}), ` +
        `shifted ${(100 * shifted).toFixed(2)}%, drop ${(100 * (metrics.drop ?? NaN)).toFixed(2)} points  (${Date.now() - t0} ms)`,
    );
  }
  const out: Manifest = { ...manifest, models: models.map((m) => m.entry) };
  writeFileSync(join(DEFAULT_MODELS_DIR, 'manifest.json'), `${JSON.stringify(out, null, 2)}\n`);
  console.log(`wrote ${join(DEFAULT_MODELS_DIR, 'manifest.json')}`);
  updateReadme(out);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main();
}
