/**
 * src/data: the datasets (digits, mail), their fixed splits and shifted per-user streams, the text
 * tokenizer of the built-in model, and the verified registry of the built-in models in models/.
 * Imports nothing of ours.
 */

export { DataError, DatasetMissingError, ManifestError, ModelChecksumError, TokenizerFormatError } from './errors.js';
export { checkSeed, createRng, hashSeeds, type Rng } from './rng.js';
export { MAIL_PACKAGE, MNIST_PACKAGE, resolvePackageDir, type DatasetOptions } from './packages.js';
export {
  DIGIT_LABELS,
  DIGIT_PIXELS,
  DIGIT_SIZE,
  applyStyle,
  digitSamples,
  digitSplitIndices,
  digitSplitOf,
  digitStream,
  loadDigits,
  userStyle,
  type DigitData,
  type DigitSample,
  type DigitSet,
  type DigitSplit,
  type DigitStreamOptions,
  type DigitStyle,
  type DigitStyleKind,
} from './digits.js';
export {
  MAIL_LABELS,
  SHIFTED_MAIL_GROUPS,
  SOURCE_MAIL_GROUPS,
  loadMailGroup,
  mailSplitOf,
  mailStream,
  mailText,
  sourceMail,
  type Mail,
  type MailGroup,
  type MailSample,
  type MailStreamOptions,
} from './mail.js';
export {
  Tokenizer,
  loadTokenizer,
  parseTokenizer,
  words,
  type EncodeBatchOptions,
  type EncodedBatch,
  type TokenizerSpec,
} from './tokenizer.js';
export {
  DEFAULT_MODELS_DIR,
  loadBuiltinModels,
  readManifest,
  sha256Hex,
  type BuiltinModel,
  type BuiltinModels,
  type Manifest,
  type ManifestMetric,
  type ManifestModel,
  type ManifestTensor,
} from './builtin-models.js';
